/** Prints what the loaded shim supports (LibTorch version, CUDA, distributed backends) as JSON. */
import { raw } from "../../lib/tensor.ts";

const r = raw();
console.log(JSON.stringify({
  torch: r.torch_version(),
  cuda: r.cuda_is_available(),
  gpus: r.cuda_device_count(),
  gloo: r.dist_has_backend("gloo"),
  nccl: r.dist_has_backend("nccl"),
}));
