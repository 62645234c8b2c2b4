import assert from "node:assert/strict";
import {
  COMPOSE_FILE,
  ComposeProject,
  TEST_PROFILE,
  TEST_PROJECT,
  TEST_SERVICES,
} from "../../../scripts/_services/compose.ts";

/**
 * A fake `docker` that records each call's arguments (one per line, then `<end>`) and answers
 * `compose ps` with the contents of `ps.out`. Docker itself is not needed.
 */
async function fakeDocker(): Promise<
  { dir: string; program: string; calls(): Promise<string[][]> } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "agentsocket-fake-docker-" });
  const program = `${dir}/docker`;
  await Deno.writeTextFile(
    program,
    `#!/bin/sh
log="$(dirname "$0")/calls.log"
for arg in "$@"; do printf '%s\\n' "$arg" >> "$log"; done
printf '<end>\\n' >> "$log"
case " $* " in
  *" ps "*) cat "$(dirname "$0")/ps.out" 2>/dev/null ;;
esac
exit 0
`,
  );
  await Deno.chmod(program, 0o755);
  return {
    dir,
    program,
    async calls() {
      const text = await Deno.readTextFile(`${dir}/calls.log`).catch(() => "");
      const calls: string[][] = [];
      let call: string[] = [];
      for (const line of text.split("\n").slice(0, -1)) {
        if (line === "<end>") {
          calls.push(call);
          call = [];
        } else call.push(line);
      }
      return calls;
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs `fn` with `AGENTSOCKET_DOCKER` set to `program`, restoring it after. */
async function withDocker<T>(program: string, fn: () => Promise<T>): Promise<T> {
  const before = Deno.env.get("AGENTSOCKET_DOCKER");
  Deno.env.set("AGENTSOCKET_DOCKER", program);
  try {
    return await fn();
  } finally {
    if (before === undefined) Deno.env.delete("AGENTSOCKET_DOCKER");
    else Deno.env.set("AGENTSOCKET_DOCKER", before);
  }
}

/** The arguments every call on the project starts with. */
const PROJECT_ARGS = ["compose", "-f", COMPOSE_FILE, "-p", TEST_PROJECT, "--profile", TEST_PROFILE];

Deno.test({
  name: "ComposeProject drives only the test profile's services, in a project of their own",
  ignore: Deno.build.os === "windows",
  async fn(t) {
    await using docker = await fakeDocker();
    await withDocker(docker.program, async () => {
      const project = await ComposeProject.open();
      assert.ok(project, "`docker compose version` answered, so the plugin is used");

      await t.step("up() starts postgres-test and redis-test and waits for them", async () => {
        const before = (await docker.calls()).length;
        assert.equal((await project.up(["postgres", "redis"])).code, 0);
        assert.deepEqual((await docker.calls()).slice(before), [[
          ...PROJECT_ARGS,
          "up",
          "-d",
          "--wait",
          "--wait-timeout",
          "180",
          "postgres-test",
          "redis-test",
        ]]);
      });

      await t.step("running() maps the test services back, ignoring any other", async () => {
        await Deno.writeTextFile(`${docker.dir}/ps.out`, "redis-test\npostgres\n");
        assert.deepEqual(await project.running(), ["redis"]);
        await Deno.writeTextFile(`${docker.dir}/ps.out`, "postgres-test\nredis-test\n");
        assert.deepEqual(await project.running(), ["postgres", "redis"]);
        const calls = await docker.calls();
        assert.deepEqual(calls.at(-1), [
          ...PROJECT_ARGS,
          "ps",
          "--services",
          "--status",
          "running",
        ]);
      });

      await t.step("down() removes only what it is given, or the whole test project", async () => {
        const before = (await docker.calls()).length;
        await project.down(["redis"], false);
        await project.down(["postgres", "redis"], true);
        assert.deepEqual((await docker.calls()).slice(before), [
          [...PROJECT_ARGS, "rm", "--stop", "--force", "redis-test"],
          [...PROJECT_ARGS, "down", "--remove-orphans"],
        ]);
      });
    });
  },
});

/** The lines of one top-level service block of compose.yaml (a light reading, not a parser). */
function serviceBlock(compose: string, name: string): string {
  const services = compose.slice(compose.indexOf("\nservices:\n"));
  const start = services.indexOf(`\n  ${name}:\n`);
  assert.notEqual(start, -1, `compose.yaml has no service "${name}"`);
  const rest = services.slice(start + name.length + 4);
  const end = rest.search(/\n {2}\S|\n\S/);
  return end === -1 ? rest : rest.slice(0, end);
}

Deno.test("compose.yaml keeps development data in volumes and test data in tmpfs", async () => {
  const compose = await Deno.readTextFile(COMPOSE_FILE);
  for (const name of Object.values(TEST_SERVICES)) {
    const block = serviceBlock(compose, name);
    assert.match(block, new RegExp(`profiles: \\[${TEST_PROFILE}\\]`), `${name} is in the profile`);
    assert.match(block, /tmpfs:/, `${name} keeps its data in tmpfs`);
    assert.doesNotMatch(block, /volumes:/, `${name} has no volume`);
  }
  for (const name of ["postgres", "redis"]) {
    const block = serviceBlock(compose, name);
    assert.doesNotMatch(block, /profiles:/, `${name} starts with a plain \`docker compose up\``);
    assert.match(block, new RegExp(`- ${name}-data:`), `${name} keeps its data in a volume`);
    assert.doesNotMatch(block, /tmpfs:|fsync=off/, `${name} keeps durability on`);
  }
});
