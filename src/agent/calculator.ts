/**
 * The demo agent's calculator: finds an integer arithmetic expression (`+ - * / ( )`) in a
 * message and evaluates it exactly (BigInt), without `eval`.
 *
 * @module
 */

/** The result of {@link evaluateExpression}. */
export type Evaluation =
  | { readonly ok: true; readonly value: string }
  | { readonly ok: false; readonly error: string };

const CANDIDATE = /[-+*/()\d\s]+/g;
const MAX_EXPRESSION_LENGTH = 200;

/**
 * Finds the longest integer arithmetic expression in `text` (at least one operator between
 * two numbers), or null.
 *
 * @example Usage
 * ```ts
 * import { findExpression } from "./calculator.ts";
 * findExpression("what is 2+3*4?"); // "2+3*4"
 * ```
 */
export function findExpression(text: string): string | null {
  let best: string | null = null;
  for (const match of text.matchAll(CANDIDATE)) {
    const candidate = match[0].trim();
    if (candidate.length > MAX_EXPRESSION_LENGTH) continue;
    if (!/\d\s*[-+*/]\s*[-+(]*\s*\d/.test(candidate)) continue;
    if (!evaluateExpression(candidate).ok && !isDivisionByZero(candidate)) continue;
    if (best === null || candidate.length > best.length) best = candidate;
  }
  return best;
}

function isDivisionByZero(expression: string): boolean {
  const result = evaluateExpression(expression);
  return !result.ok && result.error === "division by zero";
}

/**
 * Evaluates an integer arithmetic expression. Division is exact: an inexact quotient is given
 * as a decimal with up to 10 places.
 *
 * @example Usage
 * ```ts
 * import { evaluateExpression } from "./calculator.ts";
 * evaluateExpression("2+3*4"); // { ok: true, value: "14" }
 * ```
 */
export function evaluateExpression(expression: string): Evaluation {
  const tokens = expression.match(/\d+|[-+*/()]|\S/g) ?? [];
  let position = 0;
  const peek = () => tokens[position];
  const take = () => tokens[position++];

  // Values are fractions n/d with d > 0, kept exact.
  type Fraction = { n: bigint; d: bigint };
  const gcd = (a: bigint, b: bigint): bigint => {
    a = a < 0n ? -a : a;
    while (b !== 0n) [a, b] = [b, a % b];
    return a;
  };
  const norm = (n: bigint, d: bigint): Fraction => {
    if (d < 0n) [n, d] = [-n, -d];
    const g = gcd(n, d) || 1n;
    return { n: n / g, d: d / g };
  };

  function expr(): Fraction {
    let left = term();
    while (peek() === "+" || peek() === "-") {
      const op = take();
      const right = term();
      left = op === "+"
        ? norm(left.n * right.d + right.n * left.d, left.d * right.d)
        : norm(left.n * right.d - right.n * left.d, left.d * right.d);
    }
    return left;
  }
  function term(): Fraction {
    let left = factor();
    while (peek() === "*" || peek() === "/") {
      const op = take();
      const right = factor();
      if (op === "*") left = norm(left.n * right.n, left.d * right.d);
      else {
        if (right.n === 0n) throw new RangeError("division by zero");
        left = norm(left.n * right.d, left.d * right.n);
      }
    }
    return left;
  }
  function factor(): Fraction {
    const token = take();
    if (token === "-") {
      const inner = factor();
      return { n: -inner.n, d: inner.d };
    }
    if (token === "+") return factor();
    if (token === "(") {
      const inner = expr();
      if (take() !== ")") throw new SyntaxError("missing )");
      return inner;
    }
    if (token !== undefined && /^\d+$/.test(token)) return { n: BigInt(token), d: 1n };
    throw new SyntaxError(`unexpected ${token === undefined ? "end" : `"${token}"`}`);
  }

  try {
    const value = expr();
    if (position !== tokens.length) throw new SyntaxError(`unexpected "${peek()}"`);
    return { ok: true, value: formatFraction(value.n, value.d) };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
}

function formatFraction(n: bigint, d: bigint): string {
  if (d === 1n) return n.toString();
  const negative = n < 0n;
  const abs = negative ? -n : n;
  const whole = abs / d;
  let rest = abs % d;
  let digits = "";
  for (let i = 0; i < 10 && rest !== 0n; i++) {
    rest *= 10n;
    digits += (rest / d).toString();
    rest %= d;
  }
  digits = digits.replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${digits ? `.${digits}` : ""}`;
}
