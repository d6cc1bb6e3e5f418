/**
 * Generates the C header and the exception-safe C++ entry points from the op table. Every entry
 * point catches everything (`catch (...)` included), records the message thread-locally and
 * returns a neutral value, so no C++ exception ever crosses the boundary.
 */
import { type ArgKind, OPS, type OpSpec, type RetKind, SYMBOL_PREFIX } from "./ops.ts";

/** Splits `"kind name"` into its parts. */
export function parseArg(arg: string): { kind: ArgKind; name: string } {
  const space = arg.indexOf(" ");
  return { kind: arg.slice(0, space) as ArgKind, name: arg.slice(space + 1) };
}

const C_PARAMS: Record<ArgKind, (n: string) => string[]> = {
  "T": (n) => [`at::Tensor* ${n}_`],
  "T?": (n) => [`at::Tensor* ${n}_`],
  "T[]": (n) => [`at::Tensor* const* ${n}_ptr`, `int64_t ${n}_len`],
  "i64": (n) => [`int64_t ${n}`],
  "i64?": (n) => [`int64_t ${n}`],
  "f64": (n) => [`double ${n}`],
  "f64?": (n) => [`double ${n}`],
  "S": (n) => [`double ${n}_`],
  "bool": (n) => [`bool ${n}`],
  "i32": (n) => [`int32_t ${n}`],
  "dtype": (n) => [`int32_t ${n}_`],
  "device": (n) => [`int32_t ${n}`],
  "i64[]": (n) => [`const int64_t* ${n}_ptr`, `int64_t ${n}_len`],
  "f64[]": (n) => [`const double* ${n}_ptr`, `int64_t ${n}_len`],
  "str": (n) => [`const char* ${n}`],
  "buf": (n) => [`void* ${n}`],
  "P": (n) => [`void* ${n}`],
  "P?": (n) => [`void* ${n}`],
};

const PRELUDE: Partial<Record<ArgKind, (n: string) => string>> = {
  "T": (n) => `const at::Tensor& ${n} = deref(${n}_, "${n}");`,
  "T?": (n) => `const std::optional<at::Tensor> ${n} = deref_opt(${n}_);`,
  "T[]": (n) => `const std::vector<at::Tensor> ${n} = deref_list(${n}_ptr, ${n}_len, "${n}");`,
  "dtype": (n) => `const at::ScalarType ${n} = dtype_of(${n}_);`,
  "S": (n) => `const at::Scalar ${n} = num(${n}_);`,
  "i64[]": (n) => `const at::IntArrayRef ${n}(${n}_ptr, static_cast<size_t>(${n}_len));`,
  "f64[]": (n) => `const at::ArrayRef<double> ${n}(${n}_ptr, static_cast<size_t>(${n}_len));`,
};

const C_RETURN: Record<RetKind, string> = {
  "T": "at::Tensor*",
  "T?": "at::Tensor*",
  "T[]": "int64_t",
  "void": "int32_t",
  "i64": "int64_t",
  "f64": "double",
  "bool": "bool",
  "i32": "int32_t",
  "str": "const char*",
  "P": "void*",
};

const ERROR_VALUE: Record<RetKind, string> = {
  "T": "nullptr",
  "T?": "nullptr",
  "T[]": "-1",
  "void": "-1",
  "i64": "0",
  "f64": 'std::nan("")',
  "bool": "false",
  "i32": "0",
  "str": "nullptr",
  "P": "nullptr",
};

function wrapExpr(ret: RetKind, expr: string): string {
  switch (ret) {
    case "T":
      return `return wrap(${expr});`;
    case "T?":
      return `return wrap_optional(${expr});`;
    case "T[]":
      return `return stash_list(${expr});`;
    case "str":
      return `return stash_string(${expr});`;
    default:
      return `return ${expr};`;
  }
}

function signature(name: string, spec: OpSpec): string {
  const params = spec.args.flatMap((a) => {
    const { kind, name } = parseArg(a);
    return C_PARAMS[kind](name);
  });
  return `${C_RETURN[spec.ret]} ${SYMBOL_PREFIX}${name}(${params.join(", ") || "void"})`;
}

function definition(name: string, spec: OpSpec): string {
  const sig = signature(name, spec);
  const body = spec.body.trim();
  if (spec.raw) return `SLIMCLR_API ${sig} { return ${body}; }`;
  const prelude = spec.args.map((a) => {
    const { kind, name } = parseArg(a);
    return PRELUDE[kind]?.(name) ?? "";
  }).filter(Boolean);
  let core: string;
  if (spec.ret === "void") core = `${body}\n    return 0;`;
  else if (body.startsWith("{")) core = body;
  else core = wrapExpr(spec.ret, body);
  return [
    `SLIMCLR_API ${sig} {`,
    `  g_has_error = false;`,
    `  try {`,
    ...prelude.map((l) => `    ${l}`),
    `    ${core}`,
    `  } catch (const std::exception& e) {`,
    `    set_error(e.what());`,
    `  } catch (...) {`,
    `    set_error("unknown C++ exception");`,
    `  }`,
    `  return ${ERROR_VALUE[spec.ret]};`,
    `}`,
  ].join("\n");
}

/** The C header declaring every entry point (for C consumers and documentation). */
export function generateHeader(ops: Record<string, OpSpec> = OPS): string {
  const lines = Object.entries(ops).map(([name, spec]) =>
    signature(name, spec).replaceAll("at::Tensor*", "st_tensor").replace(
      "st_tensor const*",
      "const st_tensor*",
    ) + ";"
  );
  return [
    "// Generated from ffi/ops.ts by ffi/codegen.ts. Do not edit.",
    "#pragma once",
    "#include <stdbool.h>",
    "#include <stdint.h>",
    "#ifdef __cplusplus",
    'extern "C" {',
    "#endif",
    "typedef struct st_tensor_s* st_tensor;",
    ...lines,
    "#ifdef __cplusplus",
    "}",
    "#endif",
    "",
  ].join("\n");
}

/** The C++ source defining every entry point. */
export function generateSource(ops: Record<string, OpSpec> = OPS): string {
  return [
    "// Generated from ffi/ops.ts by ffi/codegen.ts. Do not edit.",
    '#include "runtime.hpp"',
    '#include "optim.hpp"',
    '#include "cuda.hpp"',
    '#include "data.hpp"',
    '#include "dist.hpp"',
    '#include "slice.hpp"',
    "#include <torch/version.h>",
    "",
    '#define SLIMCLR_API __attribute__((visibility("default")))',
    "using namespace slimclr;",
    'extern "C" {',
    ...Object.entries(ops).map(([name, spec]) => definition(name, spec)),
    '}  // extern "C"',
    "",
  ].join("\n");
}
