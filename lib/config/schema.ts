/**
 * Config schemas: one declaration per setting drives its default, its validation, its command-line
 * flag (`--section.key value`) and its line in `--help`. YAML recipes and flags are both checked
 * against the schema: unknown keys, wrong types and values out of range are errors naming the key.
 */
import YAML from "yaml";

/** A numeric setting. */
export type NumberField = {
  kind: "number";
  default: number;
  help: string;
  min?: number;
  max?: number;
  integer?: boolean;
};
/** A string setting, optionally one of `choices`. */
export type StringField = {
  kind: "string";
  default: string;
  help: string;
  choices?: readonly string[];
};
/** A boolean setting. */
export type BooleanField = { kind: "boolean"; default: boolean; help: string };
/** A list of numbers. */
export type NumbersField = {
  kind: "numbers";
  default: readonly number[];
  help: string;
  min?: number;
  max?: number;
};
/** One setting. */
export type Field = NumberField | StringField | BooleanField | NumbersField;

/** A section of settings, or nested sections. */
export type Schema = { readonly [key: string]: Field | Schema };

/** A config built from a schema: numbers, strings, booleans, number lists, nested records. */
export type ConfigOf<S extends Schema> = {
  -readonly [K in keyof S]: S[K] extends NumberField ? number
    : S[K] extends StringField ? string
    : S[K] extends BooleanField ? boolean
    : S[K] extends NumbersField ? number[]
    : S[K] extends Schema ? ConfigOf<S[K]>
    : never;
};

/** A bad config value or key, named by its dotted path and source (file or flag). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

const isField = (x: Field | Schema): x is Field =>
  typeof (x as Field).kind === "string" && typeof (x as Field).help === "string";

/** Helpers to declare fields tersely. */
export const f = {
  num: (d: number, help: string, o: { min?: number; max?: number } = {}): NumberField => ({
    kind: "number",
    default: d,
    help,
    ...o,
  }),
  int: (d: number, help: string, o: { min?: number; max?: number } = {}): NumberField => ({
    kind: "number",
    default: d,
    help,
    integer: true,
    ...o,
  }),
  str: (d: string, help: string, choices?: readonly string[]): StringField => ({
    kind: "string",
    default: d,
    help,
    choices,
  }),
  bool: (d: boolean, help: string): BooleanField => ({ kind: "boolean", default: d, help }),
  nums: (
    d: readonly number[],
    help: string,
    o: { min?: number; max?: number } = {},
  ): NumbersField => ({
    kind: "numbers",
    default: d,
    help,
    ...o,
  }),
};

/** Every leaf of a schema with its dotted path. */
export function fields(schema: Schema, prefix = ""): [string, Field][] {
  return Object.entries(schema).flatMap(([k, v]) =>
    isField(v) ? [[prefix + k, v] as [string, Field]] : fields(v, `${prefix}${k}.`)
  );
}

/** The defaults of a schema. */
export function defaults<S extends Schema>(schema: S): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    out[k] = isField(v) ? structuredClone(v.default) : defaults(v);
  }
  return out as ConfigOf<S>;
}

function describe(field: Field): string {
  switch (field.kind) {
    case "number":
      return field.integer ? "an integer" : "a number";
    case "string":
      return field.choices ? `one of ${field.choices.join(", ")}` : "a string";
    case "boolean":
      return "true or false";
    case "numbers":
      return "a list of numbers (e.g. 1,0.5)";
  }
}

/** Converts and checks one value; `where` names its origin for the error. */
export function coerce(field: Field, value: unknown, path: string, where: string): unknown {
  const fail = (why = `expected ${describe(field)}`) =>
    new ConfigError(`${where}: '${path}' ${why}, got ${JSON.stringify(value)}`);
  switch (field.kind) {
    case "number": {
      const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
      if (typeof n !== "number" || !Number.isFinite(n)) throw fail();
      if (field.integer && !Number.isInteger(n)) throw fail();
      if (field.min !== undefined && n < field.min) throw fail(`must be ≥ ${field.min}`);
      if (field.max !== undefined && n > field.max) throw fail(`must be ≤ ${field.max}`);
      return n;
    }
    case "string": {
      if (typeof value !== "string" && typeof value !== "number") throw fail();
      const s = String(value);
      if (field.choices && !field.choices.includes(s)) throw fail();
      return s;
    }
    case "boolean": {
      if (typeof value === "boolean") return value;
      if (value === "true" || value === "1") return true;
      if (value === "false" || value === "0") return false;
      throw fail();
    }
    case "numbers": {
      const list = typeof value === "string"
        ? value.split(",").map((s) => s.trim()).filter(Boolean).map(Number)
        : typeof value === "number"
        ? [value]
        : value;
      if (!Array.isArray(list) || !list.every((x) => typeof x === "number" && Number.isFinite(x))) {
        throw fail();
      }
      for (const x of list) {
        if (field.min !== undefined && x < field.min) throw fail(`entries must be ≥ ${field.min}`);
        if (field.max !== undefined && x > field.max) throw fail(`entries must be ≤ ${field.max}`);
      }
      return list;
    }
  }
}

function leafAt(schema: Schema, path: string): Field | undefined {
  let node: Field | Schema | undefined = schema;
  for (const part of path.split(".")) {
    if (!node || isField(node)) return undefined;
    node = (node as Schema)[part];
  }
  return node && isField(node) ? node : undefined;
}

function setAt(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = target;
  for (const p of parts.slice(0, -1)) node = node[p] as Record<string, unknown>;
  node[parts[parts.length - 1]] = value;
}

/** Edit distance between two short strings (insertions, deletions, substitutions, swaps). */
function editDistance(a: string, b: string): number {
  const d = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * " (did you mean …?)" for an unknown key: keys with the same last part in another section, else
 * keys within two edits of it (a typo), else nothing.
 */
function suggest(schema: Schema, path: string, taskFlags: readonly string[] = []): string {
  const last = path.split(".").pop()!;
  const keys = [...fields(schema).map(([p]) => p), ...taskFlags];
  let near = keys.filter((p) => p.endsWith("." + last) || p === last);
  if (!near.length) {
    const typo = Math.min(2, Math.floor(path.length / 3));
    near = keys.filter((p) => editDistance(p, path) <= typo);
  }
  return near.length ? ` (did you mean ${near.join(" or ")}?)` : "";
}

/** Applies a nested record (from YAML or a saved config) on top of `config`, checking every key. */
export function applyRecord(
  schema: Schema,
  config: Record<string, unknown>,
  record: unknown,
  where: string,
): void {
  const walk = (node: Schema, rec: unknown, prefix: string) => {
    if (rec === null || rec === undefined) return;
    if (typeof rec !== "object" || Array.isArray(rec)) {
      throw new ConfigError(`${where}: '${prefix.slice(0, -1) || "<top>"}' must be a mapping`);
    }
    for (const [k, v] of Object.entries(rec as Record<string, unknown>)) {
      const path = prefix + k;
      const child = node[k];
      if (!child) throw new ConfigError(`${where}: unknown key '${path}'${suggest(schema, path)}`);
      if (isField(child)) setAt(config, path, coerce(child, v, path, where));
      else walk(child, v, path + ".");
    }
  };
  walk(schema, record, "");
}

/** Parses a YAML recipe and applies it. */
export function applyYaml(
  schema: Schema,
  config: Record<string, unknown>,
  text: string,
  file: string,
): void {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  applyRecord(schema, config, doc, file);
}

/** Applies `--a.b value` / `--a.b=value` flags; unknown flags are errors naming them. */
export function applyFlags(
  schema: Schema,
  config: Record<string, unknown>,
  flags: [string, string][],
  /** The task's own flags (`resume`, `model`, …), suggested for near misses too. */
  taskFlags: readonly string[] = [],
) {
  for (const [name, value] of flags) {
    const field = leafAt(schema, name);
    if (!field) {
      throw new ConfigError(`unknown flag --${name}${suggest(schema, name, taskFlags)}`);
    }
    setAt(config, name, coerce(field, value, name, `--${name}`));
  }
}

/** `--help` lines for every setting, with defaults. */
export function helpText(schema: Schema): string {
  const rows = fields(schema).map(([path, field]) => {
    const d = Array.isArray(field.default) ? field.default.join(",") : String(field.default);
    return [`  --${path}`, `${field.help} (${describe(field)}; default ${d === "" ? '""' : d})`];
  });
  const width = Math.max(...rows.map(([a]) => a.length)) + 2;
  return rows.map(([a, b]) => a.padEnd(width) + b).join("\n");
}
