/**
 * The part of the browser the chat page uses, typed, and a small element builder.
 *
 * Deno's type library has no DOM, and `/// <reference lib="dom" />` would apply to the whole
 * program `deno check` builds (it breaks other modules' stream types), so the page declares
 * the small part of the DOM it uses here, once.
 *
 * @module
 */

/** A DOM node (an element or text), as far as the page uses one. */
export interface PageNode {
  textContent: string | null;
  readonly parentElement: PageElement | null;
  remove(): void;
}

/** A DOM element, as far as the page uses one (a union of the elements it creates). */
export interface PageElement extends PageNode {
  id: string;
  className: string;
  hidden: boolean;
  disabled: boolean;
  value: string;
  type: string;
  title: string;
  /** `<details>` and `<dialog>`. */
  open: boolean;
  /** `<dialog>`. */
  returnValue: string;
  scrollTop: number;
  readonly scrollHeight: number;
  readonly clientHeight: number;
  readonly dataset: Record<string, string | undefined>;
  readonly children: ArrayLike<PageElement>;
  append(...nodes: (PageNode | string)[]): void;
  replaceChildren(...nodes: (PageNode | string)[]): void;
  insertBefore(node: PageNode, before: PageNode | null): void;
  setAttribute(name: string, value: string): void;
  getAttribute(name: string): string | null;
  removeAttribute(name: string): void;
  toggleAttribute(name: string, force?: boolean): boolean;
  addEventListener(
    type: string,
    listener: (event: PageEvent) => void,
    options?: { capture?: boolean },
  ): void;
  focus(options?: { preventScroll?: boolean }): void;
  select(): void;
  contains(node: PageNode | null): boolean;
  closest(selector: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
  matches(selector: string): boolean;
  showModal(): void;
  close(returnValue?: string): void;
  scrollIntoView(options?: { block?: "nearest" | "start" | "end" }): void;
}

/** A DOM event, as far as the page uses one. */
export interface PageEvent {
  readonly type: string;
  readonly target: PageElement | null;
  readonly relatedTarget?: PageElement | null;
  readonly key?: string;
  readonly shiftKey?: boolean;
  readonly isComposing?: boolean;
  preventDefault(): void;
  stopPropagation(): void;
}

/** The document, as far as the page uses it. */
export interface PageDocument {
  /** The URL every relative URL of the page resolves against (`<base href>`). */
  readonly baseURI: string;
  readonly activeElement: PageElement | null;
  readonly body: PageElement;
  readonly documentElement: PageElement;
  readonly visibilityState: "visible" | "hidden";
  title: string;
  getElementById(id: string): PageElement | null;
  createElement(tag: string): PageElement;
  createTextNode(text: string): PageNode;
  addEventListener(type: string, listener: (event: PageEvent) => void): void;
}

/** The window, as far as the page uses it (beyond what Deno's types already declare). */
export interface PageWindow {
  readonly document: PageDocument;
  readonly location: { hash: string; readonly protocol: string; readonly href: string };
  readonly history: {
    pushState(state: unknown, unused: string, url: string): void;
    replaceState(state: unknown, unused: string, url: string): void;
  };
  matchMedia(query: string): { readonly matches: boolean };
  addEventListener(type: string, listener: (event: PageEvent) => void): void;
}

/** The browser window the page runs in. */
export const page = globalThis as unknown as PageWindow;

/** The page's document. */
export const document: PageDocument = page.document;

/**
 * The element with `id`.
 *
 * @throws {Error} When the page has none (the HTML and the script disagree).
 */
export function byId(id: string): PageElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`The page has no #${id}`);
  return found;
}

/** Options of {@link h}. */
export interface ElementOptions {
  readonly className?: string;
  /** Its text (set as `textContent`, never parsed as HTML). */
  readonly text?: string;
  /** Attributes, e.g. `{ type: "button", "aria-label": "…" }`. */
  readonly attrs?: Readonly<Record<string, string>>;
  readonly dataset?: Readonly<Record<string, string>>;
  readonly hidden?: boolean;
  readonly children?: readonly (PageNode | string | undefined)[];
  /** Event listeners by event type. */
  readonly on?: Readonly<Record<string, (event: PageEvent) => void>>;
}

/** Creates an element; text goes in as text, so nothing from a user or a model is parsed. */
export function h(tag: string, options: ElementOptions = {}): PageElement {
  const created = document.createElement(tag);
  if (options.className) created.className = options.className;
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    created.setAttribute(name, value);
  }
  for (const [name, value] of Object.entries(options.dataset ?? {})) {
    created.dataset[name] = value;
  }
  if (options.hidden) created.hidden = true;
  if (options.text !== undefined) created.textContent = options.text;
  for (const child of options.children ?? []) if (child !== undefined) created.append(child);
  for (const [type, listener] of Object.entries(options.on ?? {})) {
    created.addEventListener(type, listener);
  }
  return created;
}

/** A button that is a button (`type="button"`, so it never submits a form by accident). */
export function button(
  text: string,
  options: ElementOptions & { readonly onClick?: () => void } = {},
): PageElement {
  const created = h("button", {
    ...options,
    text,
    attrs: { type: "button", ...options.attrs },
  });
  const onClick = options.onClick;
  if (onClick) created.addEventListener("click", () => onClick());
  return created;
}

/** Sets an element's text, appending when the new text only extends it (a streamed reply). */
export function setGrowingText(target: PageElement, previous: string, next: string): void {
  if (next === previous) return;
  if (previous !== "" && next.startsWith(previous)) {
    target.append(document.createTextNode(next.slice(previous.length)));
  } else {
    target.textContent = next;
  }
}

/** JSON on one line, for a tool's input and output; never throws. */
export function compactJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** JSON for people: indented, and never throws. */
export function prettyJson(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}
