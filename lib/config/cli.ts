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
