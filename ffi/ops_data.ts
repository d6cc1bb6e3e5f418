/**
 * Data-pipeline part of the op table (decoding, batched augmentation, LMDB and RecordIO access,
 * the background loader); its C++ lives in `ffi/data.hpp`. Same conventions as `ffi/ops.ts`.
 *
 * Sources (`P`) are `std::shared_ptr<Source>*`: a loader keeps its source alive on its own, so a
 * source may be freed while a loader built on it still runs. Strings lists travel as `buf` of
 * NUL-terminated UTF-8 strings plus their byte length.
 */
import { op } from "./ops.ts";

/** Data ops, merged into `OPS`. */
export const DATA_OPS = {
  // ---- diagnostics ----
  data_codecs: op([], "str", "data::codec_status()"),

  // ---- sources ----
  data_source_tensor: op(["T images"], "P", "data::tensor_source(images)"),
  data_source_files: op(["buf paths", "i64 nbytes"], "P", "data::file_source(paths, nbytes)"),
  data_source_blob: op(["T bytes", "T offsets"], "P", "data::blob_source(bytes, offsets)"),
  data_source_lmdb: op(
    ["str path", "buf keys", "i64 nbytes"],
    "P",
    "data::lmdb_source(path, keys, nbytes)",
  ),
  data_source_recordio: op(["str path", "T offsets"], "P", "data::record_source(path, offsets)"),
  data_source_size: op(["P s"], "i64", "data::source_ref(s)->size()"),
  data_source_free: op(["P s"], "void", "delete static_cast<data::SourcePtr*>(s);"),
  data_source_bytes: op(["P s", "i64 i"], "T", "data::source_bytes(s, i)"),
  data_decode: op(
    ["P s", "T indices", "i64 channels"],
    "T[]",
    "data::decode_source(s, indices, channels)",
  ),
  data_decode_errors: op([], "str", "data::g_data_errors"),

  // ---- batched augmentation ----
  data_aug_sample: op(
    ["T sizes", "f64[] cfg", "i64 seed", "T keys", "i64 view"],
    "T",
    "data::aug_sample(sizes, cfg, seed, keys, view)",
  ),
  data_aug_apply: op(
    ["T images", "T params", "f64[] cfg"],
    "T",
    "data::aug_apply(images, params, cfg)",
  ),

  // ---- LMDB writer and RecordIO labels ----
  data_lmdb_create: op(
    ["str path", "i64 map_size"],
    "P",
    "new data::LmdbEnv(path, true, map_size)",
  ),
  data_lmdb_put: op(
    ["P w", "buf key", "i64 klen", "buf value", "i64 vlen"],
    "void",
    "data::lmdb_ref(w).put(key, (size_t)klen, value, (size_t)vlen);",
  ),
  data_lmdb_commit: op(["P w"], "void", "data::lmdb_ref(w).commit();"),
  data_lmdb_close: op(
    ["P w"],
    "void",
    "{ auto* e = &data::lmdb_ref(w); std::unique_ptr<data::LmdbEnv> g(e); e->commit(); }",
  ),
  data_recordio_labels: op(
    ["str path", "T offsets"],
    "T",
    "data::record_labels(path, offsets)",
  ),

  // ---- background loader ----
  data_loader_new: op(
    ["P s", "f64[] cfgs", "i64 channels", "i64 threads", "bool pin", "bool strict"],
    "P",
    "new data::Loader(data::source_ref(s), data::parse_configs(cfgs), channels, threads, pin, strict)",
  ),
  data_loader_submit: op(
    ["P l", "T indices", "T labels", "i64 seed"],
    "void",
    "data::loader_ref(l).submit(indices, labels, static_cast<uint64_t>(seed));",
  ),
  data_loader_take: op(["P l"], "T[]", "data::loader_ref(l).take()"),
  data_loader_errors: op(["P l"], "str", "data::loader_ref(l).last_errors"),
  data_loader_pending: op(["P l"], "i64", "data::loader_ref(l).pending()"),
  data_loader_wait_ns: op(["P l"], "i64", "data::loader_ref(l).wait_ns.load()"),
  data_loader_free: op(["P l"], "void", "delete static_cast<data::Loader*>(l);"),
} as const;
