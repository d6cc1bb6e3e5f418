/**
 * Weighted k-nearest-neighbour classification on L2-normalised features (the protocol of InstDisc
 * and MoCo's kNN monitor): cosine similarity, the k most similar training samples vote with weight
 * exp(sim / t), and the class with the largest summed weight wins.
 */
import { noGrad } from "../autograd.ts";
import { normalize } from "../functional.ts";
import { scope } from "../scope.ts";
import { cat, type Tensor, zeros } from "../tensor.ts";

/** Options of `knnPredict` / `knnAccuracy`. */
export interface KnnOptions {
  /** Neighbours (200 in the protocol). */
  k?: number;
  /** Temperature of the vote weights (0.1 in the protocol). */
  t?: number;
  /** Test samples per similarity block (bounds memory). */
  chunk?: number;
}

/**
 * Predicted classes of `test` features given `train` features and labels. Features need not be
 * normalised; labels are int64 class indices in [0, numClasses). Everything is computed on the
 * device the features and labels share.
 */
export function knnPredict(
  train: Tensor,
  trainLabels: Tensor,
  test: Tensor,
  numClasses: number,
  o: KnnOptions = {},
): Tensor {
  const k = Math.min(o.k ?? 200, train.shape[0]);
  const t = o.t ?? 0.1;
  const chunk = o.chunk ?? 512;
  return noGrad(() =>
    scope(() => {
      const bank = normalize(train, 2, 1).t();
      const queries = normalize(test, 2, 1);
      const labels = trainLabels.to("int64");
      const parts: Tensor[] = [];
      for (let start = 0; start < queries.shape[0]; start += chunk) {
        parts.push(scope(() => {
          const q = queries.narrow(0, start, Math.min(chunk, queries.shape[0] - start));
          const [sim, idx] = q.mm(bank).topk(k, 1);
          const neighbourLabels = labels.indexSelect(0, idx.flatten()).view(idx.shape[0], k);
          const weights = sim.div(t).exp();
          const votes = zeros([idx.shape[0], numClasses], { device: weights.device })
            .scatterAdd(1, neighbourLabels, weights);
          return votes.argmax(1);
        }));
      }
      return cat(parts);
    })
  );
}

/** Top-1 accuracy (0–1) of `knnPredict` against `testLabels`. */
export function knnAccuracy(
  train: Tensor,
  trainLabels: Tensor,
  test: Tensor,
  testLabels: Tensor,
  numClasses: number,
  o: KnnOptions = {},
): number {
  return scope(() => {
    const pred = knnPredict(train, trainLabels, test, numClasses, o);
    return pred.eq(testLabels.to("int64")).to("float32").mean().item();
  });
}
