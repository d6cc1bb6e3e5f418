/**
 * Command lines of config-driven tasks: task flags (declared per task) plus `--config FILE.yaml`
 * and `--section.key value` overrides checked against the task's schema.
 */
import {
  applyFlags,
  applyYaml,
  ConfigError,
  type ConfigOf,
  defaults,
  fields,
  helpText,
  type Schema,
} from "./schema.ts";

/** Kinds of task-level flags. */
export type TaskFlags = Record<string, "boolean" | "string">;

/** A parsed command line. */
export interface ParsedCommandLine<S extends Schema> {
  config: ConfigOf<S>;
  flags: Record<string, string | boolean>;
  /** Recipe files applied, in order. */
  recipes: string[];
}

/**
 * Parses `args`: task flags, `--config FILE` (repeatable, applied in order), then every
 * `--section.key value` or `--section.key=value` override. Unknown flags, missing values and bad
 * values are `ConfigError`s naming the flag.
 */
export function parseCommandLine<S extends Schema>(
  schema: S,
  args: string[],
  taskFlags: TaskFlags = {},
): ParsedCommandLine<S> {
  const config = defaults(schema) as Record<string, unknown>;
  const flags: Record<string, string | boolean> = {};
  const overrides: [string, string][] = [];
  const recipes: string[] = [];
  const booleans = new Set(fields(schema).filter(([, f]) => f.kind === "boolean").map(([p]) => p));
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      throw new ConfigError(`unexpected argument '${arg}' (flags start with --)`);
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const next = () => {
      if (inline !== undefined) return inline;
      const v = args[i + 1];
      if (v === undefined || (v.startsWith("--") && !/^--?\d/.test(v))) {
        throw new ConfigError(`--${name} needs a value`);
      }
      i++;
      return v;
    };
    if (name === "config") recipes.push(next());
    else if (taskFlags[name] === "boolean") {
      flags[name] = inline === undefined ? true : inline !== "false";
    } else if (taskFlags[name] === "string") flags[name] = next();
    else if (booleans.has(name) && inline === undefined && (args[i + 1] ?? "--").startsWith("--")) {
      overrides.push([name, "true"]);
    } else overrides.push([name, next()]);
  }
  for (const file of recipes) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch (e) {
      throw new ConfigError(`--config ${file}: ${(e as Error).message}`);
    }
    applyYaml(schema, config, text, file);
  }
  applyFlags(schema, config, overrides, ["config", ...Object.keys(taskFlags)]);
  return { config: config as ConfigOf<S>, flags, recipes };
}

/** `--help` text: usage, task flags, then every config key. */
export function commandHelp(usage: string, taskFlagHelp: string, schema: Schema): string {
  return `${usage}\n\n${taskFlagHelp}\n  --config FILE.yaml  a recipe (repeatable; later ones win)\n\n` +
    `Settings (YAML keys, or flags that override them):\n${helpText(schema)}`;
}

/** The value at dotted `path` of a config. */
function valueAt(config: unknown, path: string): unknown {
  return path.split(".").reduce((o, k) => (o as Record<string, unknown>)?.[k], config);
}

/**
 * The command line of a resumed run: the run folder's saved `config.json` with the overrides given
 * now applied on top, so that `--resume auto --run-dir DIR` alone continues the run as it was.
 * `--config` recipes given now are not applied (the saved config already holds what they set, and
 * the overrides of the original command line too). An override that changes a setting outside
 * `mayChange` (logging, checkpoint cadence: what cannot change the result) is a `ConfigError`
 * naming every such key with both values. `perInvocation` settings (where this process stops)
 * start from their defaults rather than the saved run's.
 */
export function resumeCommandLine<S extends Schema>(
  schema: S,
  args: string[],
  taskFlags: TaskFlags,
  savedConfig: string,
  mayChange: readonly string[],
  perInvocation: readonly string[] = [],
): ParsedCommandLine<S> {
  const withoutRecipes: string[] = [];
  const recipes: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--config") recipes.push(args[++i]);
    else if (args[i].startsWith("--config=")) recipes.push(args[i].slice(9));
    else withoutRecipes.push(args[i]);
  }
  const saved = parseCommandLine(schema, ["--config", savedConfig]).config;
  // Settings of one invocation (where to stop) start from their defaults, not the saved run's.
  const fresh = perInvocation.map((p) => `--${p}=${JSON.stringify(valueAt(defaults(schema), p))}`);
  const resumed = parseCommandLine(
    schema,
    ["--config", savedConfig, ...fresh, ...withoutRecipes],
    taskFlags,
  );
  const changed: string[] = [];
  for (const [path] of fields(schema)) {
    if (mayChange.includes(path) || perInvocation.includes(path)) continue;
    const [was, now] = [valueAt(saved, path), valueAt(resumed.config, path)];
    if (JSON.stringify(was) !== JSON.stringify(now)) {
      changed.push(`${path} is ${JSON.stringify(was)} there, ${JSON.stringify(now)} here`);
    }
  }
  if (changed.length) {
    throw new ConfigError(
      `resuming the run of ${savedConfig}: ${changed.join("; ")}, which would change its ` +
        `result. Resume without those overrides (the run's own settings apply), or start a new run`,
    );
  }
  return { ...resumed, recipes };
}
