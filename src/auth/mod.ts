/**
 * Token verification (jose) and development tokens (SPEC §1, §3).
 *
 * @module
 */
export * from "./token_verifier.ts";
export * from "./dev_token_issuer.ts";
