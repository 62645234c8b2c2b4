import assert from "node:assert/strict";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import { isConnectionError, toStoreError } from "../../../src/store/_postgres_errors.ts";

function coded(code: string, name = "Error"): Error {
  const error = Object.assign(new Error(`write ${code} 127.0.0.1:5432`), { code });
  error.name = name;
  return error;
}

Deno.test("isConnectionError() recognises outages and not query faults", () => {
  for (const code of ["ECONNREFUSED", "CONNECTION_CLOSED", "CONNECT_TIMEOUT", "ECONNRESET"]) {
    assert.equal(isConnectionError(coded(code)), true, code);
  }
  for (const code of ["57P01", "57P03", "08006", "53300", "57014"]) {
    assert.equal(isConnectionError(coded(code, "PostgresError")), true, code);
  }
  for (const code of ["23505", "42601", "22012", "42P01"]) {
    assert.equal(isConnectionError(coded(code, "PostgresError")), false, code);
  }
  assert.equal(isConnectionError(coded("UNDEFINED_VALUE")), false);
  assert.equal(isConnectionError(new TypeError("bug")), false);
  assert.equal(isConnectionError("ECONNREFUSED"), false);
});

Deno.test("toStoreError() wraps outages in DependencyUnavailableError and passes the rest", () => {
  const outage = coded("ECONNREFUSED");
  const wrapped = toStoreError(outage);
  assert.ok(wrapped instanceof DependencyUnavailableError);
  assert.equal(wrapped.dependency, "postgres");
  assert.equal(wrapped.cause, outage);
  const fault = coded("23505", "PostgresError");
  assert.equal(toStoreError(fault), fault);
});
