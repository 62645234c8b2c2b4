/**
 * Tools: what they are ({@link Tool}) and the registry that checks them once and validates
 * each call's input against its JSON Schema.
 *
 * @module
 */
export * from "./tool.ts";
export * from "./tool_registry.ts";
