// The sampler engine in JavaScript: a port of benign_attention/gram.py (book chapter 7c,
// "Only Gram matrices matter"). One ES module, no dependencies, no build step, Float64Array maths.
//
//   sample(config, seed)           draws one run's low-dimensional quantities (gram.sample_problems' law;
//                                  other numbers: the generators differ)
//   run(problem, {steps, lr, ...}) gradient descent in basis coordinates (gram.gram_gd) and the metrics
//                                  of every recorded step (gram.batch_metrics_np, gram.test_metrics_law)
//   problemFromJSON(obj)           a problem exported by gram.export_scenario (Python), on which run()
//                                  gives the Python core's numbers (tests/test_js_engine.py)
//
// A problem holds (flat Float64Arrays, row-major; m = span dimension, r = i * T + t for token t of
// sequence i):
//   n, T, m, N (test sequences), sigma, config
//   C (nT x m) training tokens, G (m x m) = A^T A, L (optional) a lower-triangular factor G = L L^T,
//   Omega (m x m) = K^T K - G^2, z (nT) head values, y / yClean (n) labels, noisy (n, Uint8Array),
//   nuB (m) the head, dirsB (2 x m) the signal directions, testCoef (N x T x 2) the test tokens' signal
//   parts on them, testY (N) test labels, testXi (xiCols x N x T) standard normals: set 0 for the head
//   values, set e + 1 for the scores of recorded step e.
// Metric names are the Python ones (train_loss, attn_noisy, ...).

// ---------------------------------------------------------------------------------------------------
// Random numbers: xoshiro128** (Blackman & Vigna, 2018), a 32-bit generator with period 2^128 - 1,
// seeded through splitmix32. Its uniforms have 53 random bits; normals come from the ziggurat method,
// gamma variates from Marsaglia & Tsang (2000), chi-square and chi variates from those.

/** One splitmix32 step (Vigna's splitmix, 32-bit form): the next state and a well-mixed 32-bit output. */
function splitmix32(state) {
  state = (state + 0x9e3779b9) | 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [state, (z ^ (z >>> 16)) >>> 0];
}

const rotl = (x, k) => (x << k) | (x >>> (32 - k));

// The ziggurat's 128 layers of equal area ZIG_AREA under exp(-x^2 / 2) (Doornik 2005): ZIG_X[i] the
// layers' right edges (ZIG_X[0] = area / f(R) for the base layer with its tail), ZIG_R[i] = ZIG_X[i+1] / ZIG_X[i].
const ZIG_LAYERS = 128, ZIG_TAIL = 3.442619855899, ZIG_AREA = 9.91256303526217e-3;
const ZIG_X = new Float64Array(ZIG_LAYERS + 1), ZIG_R = new Float64Array(ZIG_LAYERS);
{
  let f = Math.exp(-0.5 * ZIG_TAIL * ZIG_TAIL);
  ZIG_X[0] = ZIG_AREA / f;
  ZIG_X[1] = ZIG_TAIL;
  for (let i = 2; i < ZIG_LAYERS; i++) {
    ZIG_X[i] = Math.sqrt(-2 * Math.log(ZIG_AREA / ZIG_X[i - 1] + f));
    f = Math.exp(-0.5 * ZIG_X[i] * ZIG_X[i]);
  }
  for (let i = 0; i < ZIG_LAYERS; i++) ZIG_R[i] = ZIG_X[i + 1] / ZIG_X[i];
}

/**
 * A seeded random generator. `new Rng(...keys)` hashes any number of non-negative integer keys
 * (each split into 32-bit words) into the 128-bit state, so (seed, d, tag) names an independent stream.
 */
export class Rng {
  constructor(...keys) {
    let h = 0x6a09e667; // hash of the keys: h <- mix(h xor word), word by word
    for (const key of keys) {
      if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`Rng keys must be integers >= 0, got ${key}`);
      for (const word of [key % 2 ** 32, Math.floor(key / 2 ** 32)]) h = splitmix32(h ^ word)[1];
    }
    let state = h;
    const words = [];
    for (let i = 0; i < 4; i++) [state, words[i]] = splitmix32(state);
    if (!(words[0] | words[1] | words[2] | words[3])) words[0] = 1; // the all-zero state is a fixed point
    [this.s0, this.s1, this.s2, this.s3] = words.map((x) => x | 0); // int32 fields: fast in V8
  }

  /** The next 32-bit output of xoshiro128** (as an unsigned integer). */
  nextU32() {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform on [0, 1) with 53 random bits. */
  uniform() {
    const a = this.nextU32() >>> 5, b = this.nextU32() >>> 6; // 27 + 26 bits
    return (a * 67108864 + b) / 9007199254740992;
  }

  /**
   * Standard normal by the ziggurat method (Marsaglia & Tsang 2000) in Doornik's form (2005, "ZIGNOR"):
   * 128 layers, a 53-bit uniform u in [-1, 1) for the abscissa and 7 other bits of the same two draws for
   * the layer (independent of u, which fixes the original method's correlation), the exact tail beyond
   * R by Marsaglia's (1964) method. An exact method: rejection from the layers' union.
   */
  normal() {
    const a = this.nextU32(), b = this.nextU32();
    const u = 2 * (((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992) - 1, i = ((a & 31) << 2) | (b & 3);
    return Math.abs(u) < ZIG_R[i] ? u * ZIG_X[i] : this.normalSlow(u, i);
  }

  /** The ziggurat's rare branch for the draw (u, layer i) outside the layer's rectangle (about 1.5%). */
  normalSlow(u, i) {
    if (i === 0) return this.normalTail(ZIG_TAIL, u < 0);          // the base layer's tail
    const x = u * ZIG_X[i];                                        // a wedge: accept under the density
    const f0 = Math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x)), f1 = Math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x));
    return f1 + this.uniform() * (f0 - f1) < 1 ? x : this.normal();
  }

  /**
   * Fill `out` with `scale` times standard normals: the numbers normal() would give, with the
   * generator's state in local variables for the common branch (engines keep object fields in memory).
   */
  fillNormal(out, scale = 1) {
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    const n = out.length;
    for (let k = 0; k < n; k++) {
      const a = Math.imul(rotl(Math.imul(s1, 5), 7), 9);          // int32; only its bits are used
      let t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
      const b = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
      t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
      const u = ((a >>> 5) * 67108864 + (b >>> 6)) * 2.220446049250313e-16 - 1, i = ((a & 31) << 2) | (b & 3);
      if (Math.abs(u) < ZIG_R[i]) {
        out[k] = scale * (u * ZIG_X[i]);
      } else {
        this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
        out[k] = scale * this.normalSlow(u, i);
        s0 = this.s0; s1 = this.s1; s2 = this.s2; s3 = this.s3;
      }
    }
    this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
    return out;
  }

  /** A standard normal conditioned on |z| > r (Marsaglia's tail method), with the sign given. */
  normalTail(r, negative) {
    let x, y;
    do {
      x = Math.log(this.uniformOpen()) / r;
      y = Math.log(this.uniformOpen());
    } while (-2 * y < x * x);
    return negative ? x - r : r - x;
  }

  /** Uniform on (0, 1). */
  uniformOpen() {
    let u;
    do u = this.uniform(); while (u === 0);
    return u;
  }

  /** Gamma(shape, 1) by Marsaglia & Tsang's squeeze method; shape < 1 by Gamma(shape + 1) * U^(1/shape). */
  gamma(shape) {
    if (!(shape > 0)) throw new RangeError(`gamma shape must be > 0, got ${shape}`);
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(this.uniformOpen(), 1 / shape);
    const d = shape - 1 / 3, c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x, v;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.uniform();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** Chi-square with k > 0 degrees of freedom: 2 Gamma(k / 2). */
  chisquare(k) {
    return 2 * this.gamma(k / 2);
  }

  /** A uniformly random permutation of `values` (Fisher-Yates, in place); returns it. */
  shuffle(values) {
    for (let i = values.length - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      const t = values[i];
      values[i] = values[j];
      values[j] = t;
    }
    return values;
  }
}

// ---------------------------------------------------------------------------------------------------
// The sampler (gram.sample_problems). Streams as in Python: one per part, keyed by (seed, d, tag), so
// runs that differ only in signal_norm, rho or eta share every draw (common random numbers).

const LABELS = 0, TOKENS = 1, GRAM = 2, OMEGA = 3, TEST_LABELS = 4, TEST = 5;

/** The paper's default setting (benign_attention.data.validate_config) and trainer defaults (STEPS, LR). */
export const DEFAULTS = Object.freeze({ n: 20, T: 8, d: 2000, rho: 0.1, signal_norm: 20, sigma: 1, eta: 0.2, n_test: 1000 });
export const STEPS = 1000;
export const LR = 5e-3;

/** Knobs with defaults filled in and ranges checked (as validate_config). */
export function validateConfig(config = {}) {
  const c = { ...DEFAULTS, ...config };
  const int = (k, lo) => {
    if (!Number.isInteger(c[k]) || c[k] < lo) throw new RangeError(`${k} must be an integer >= ${lo}, got ${c[k]}`);
  };
  int("n", 2); int("T", 3); int("d", 2); int("n_test", 1);
  const num = (k, ok, what) => {
    if (typeof c[k] !== "number" || !Number.isFinite(c[k]) || !ok(c[k])) throw new RangeError(`${k} must be ${what}, got ${c[k]}`);
  };
  num("rho", (x) => x >= 0, ">= 0");
  num("signal_norm", (x) => x >= 1e-6, ">= 1e-6");
  num("sigma", (x) => x > 0, "> 0");
  num("eta", (x) => x >= 0 && x < 0.5, "in [0, 0.5)");
  return c;
}

/** ceil(n/2) labels +1 and floor(n/2) labels -1 in random order. */
function balancedLabels(rng, n) {
  const y = new Float64Array(n).fill(1);
  y.fill(-1, n - Math.floor(n / 2));
  return rng.shuffle(y);
}

/** Each sample's rank in its class's flip order: a random permutation within each class. */
function flipOrder(rng, yClean) {
  const order = new Int32Array(yClean.length);
  for (const cls of [1, -1]) {
    const idx = [];
    yClean.forEach((v, i) => { if (v === cls) idx.push(i); });
    const ranks = rng.shuffle(idx.map((_, k) => k));
    idx.forEach((i, k) => { order[i] = ranks[k]; });
  }
  return order;
}

/** data.noisy_mask: k = ceil(eta n) flips, ceil(k/2) positives and floor(k/2) negatives, nested in eta. */
export function noisyMask(yClean, order, eta) {
  const n = yClean.length;
  const k = Math.ceil(eta * n - 1e-9);
  let pos = 0;
  for (const v of yClean) if (v > 0) pos++;
  const kPos = Math.min(Math.ceil(k / 2), pos), kNeg = Math.min(k - kPos, n - pos);
  return Uint8Array.from(yClean, (v, i) => (v > 0 ? order[i] < kPos : order[i] < kNeg) ? 1 : 0);
}

/**
 * data.signal_coefficients: each token's signal on (e1, e2) in units of ||mu||, shape (N, T, 2):
 * x1 = mu_y, x2 = rho mu_y, x3 = rho mu_{-y}, x4.. = 0 (mu_{+1} = ||mu|| e1, mu_{-1} = ||mu|| e2).
 */
export function signalCoefficients(labels, T, rho) {
  const out = new Float64Array(labels.length * T * 2);
  labels.forEach((y, i) => {
    const own = y > 0 ? 0 : 1, other = 1 - own, b = i * T * 2;
    out[b + own] = 1;
    out[b + 2 + own] = rho;
    out[b + 4 + other] = rho;
  });
  return out;
}

/**
 * gram.token_coordinates: N i.i.d. N(0, sigma^2 I_d) vectors in an orthonormal basis starting with e1, e2
 * and continuing with their Gram-Schmidt directions, shape (N, 2 + r), r = min(N, d - 2): two Gaussian
 * columns, then a lower-trapezoidal Bartlett factor (chi with d - 2 - i degrees of freedom on the diagonal).
 */
export function tokenCoordinates(rng, N, d, sigma) {
  const r = Math.min(N, d - 2), m = 2 + r;
  const out = new Float64Array(N * m);
  for (let i = 0; i < N; i++) {
    out[i * m] = sigma * rng.normal();
    out[i * m + 1] = sigma * rng.normal();
    for (let j = 0; j < Math.min(i, r); j++) out[i * m + 2 + j] = sigma * rng.normal();
    if (i < r) out[i * m + 2 + i] = sigma * Math.sqrt(rng.chisquare(d - 2 - i));
  }
  return { coords: out, m };
}

/**
 * gram.wishart: W ~ Wishart_m(dof, scale^2 I) as its factor L (m x k, W = L L^T), in O(m^3) whatever dof.
 * dof >= m: Bartlett (lower triangular, L_ii = scale chi_{dof - i}, N(0, scale^2) below); 0 < dof < m:
 * L = H^T with H (dof x m) Gaussian; dof = 0: W = 0 (k = 0).
 */
export function wishartFactor(rng, m, dof, scale) {
  if (dof >= m) {
    const L = new Float64Array(m * m);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < i; j++) L[i * m + j] = scale * rng.normal();
      L[i * m + i] = scale * Math.sqrt(rng.chisquare(dof - i));
    }
    return { L, k: m };
  }
  const L = new Float64Array(m * dof);
  for (let i = 0; i < L.length; i++) L[i] = scale * rng.normal();
  return { L, k: dof };
}

/** A B for A (p x q) and B (q x r), row-major. */
function matmul(A, B, p, q, r) {
  const out = new Float64Array(p * r);
  for (let i = 0; i < p; i++) {
    for (let k = 0; k < q; k++) {
      const a = A[i * q + k];
      if (a === 0) continue;
      for (let j = 0; j < r; j++) out[i * r + j] += a * B[k * r + j];
    }
  }
  return out;
}

/** F F^T for F (p x q), row-major. */
function outerGram(F, p, q) {
  const out = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j <= i; j++) {
      const x = dot(F, i * q, F, j * q, q);
      out[i * p + j] = x;
      out[j * p + i] = x;
    }
  }
  return out;
}

/**
 * Everything random about a run except the signal strengths (gram.sample_problems' shared draw): labels
 * and flip order, the tokens' noise coordinates (Bartlett construction), G = A^T A ~ Wishart_m(d, kappa^2 I)
 * as its Bartlett factor L, Omega = L Omega0 L^T with Omega0 ~ Wishart_m(d - m, kappa^2 I), test labels and
 * testRecord + 1 sets of N x T standard normals for the law of the test scores.
 */
function drawNoise(seed, n, T, d, sigma, N, kappa, testRecord) {
  const rng = (tag) => new Rng(seed, d, tag);
  const labels = rng(LABELS);
  const yClean = balancedLabels(labels, n);
  const order = flipOrder(labels, yClean);
  const { coords: eps, m } = tokenCoordinates(rng(TOKENS), n * T, d, sigma);
  const { L } = wishartFactor(rng(GRAM), m, d, kappa);
  const om = wishartFactor(rng(OMEGA), m, d - m, kappa);
  const Omega = om.k ? outerGram(matmul(L, om.L, m, m, om.k), m, om.k) : new Float64Array(m * m);
  const testY = balancedLabels(rng(TEST_LABELS), N);
  const testXi = rng(TEST).fillNormal(new Float64Array((testRecord + 1) * N * T));
  return { yClean, order, eps, m, L, G: outerGram(L, m, m), Omega, testY, testXi };
}

/**
 * One run's problem from the sampler (gram.sample_problems' law; other numbers, numpy's generator differs).
 * W0 has i.i.d. N(0, kappa^2) entries, kappa^2 = initVar (default 1/(3d), the variance of the paper's
 * U(-1/sqrt d, 1/sqrt d)). On the noise draw (drawNoise) go the signals: C = noise + ||mu|| times the
 * signal coefficients on e1, e2; head nu_B = (e1 - e2) / (sqrt 2 ||mu||), z = C nu_B; labels with exactly
 * ceil(eta n) flips; the test tokens' signal parts. `seed` overrides config.seed. `testRecord`: how many
 * recorded steps the test normals serve (default: those of recordSteps(STEPS)). `cache`: a Map owned by
 * the caller; problems that differ only in signal_norm, rho or eta then reuse one noise draw (common
 * random numbers, as in Python), and a change of those knobs costs no sampling. Returns a problem (see the
 * top of this file) that also holds the Bartlett factor L of G, so that run() needs no Cholesky
 * factorisation; its G, L, Omega, yClean, testY and testXi are shared with the cache (run() only reads them).
 */
export function sample(config = {}, seed = config.seed ?? 0, { initVar, testRecord = recordSteps(STEPS).length, cache } = {}) {
  const c = validateConfig(config);
  const { n, T, d, sigma, n_test: N, signal_norm: mu, rho, eta } = c;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer >= 0, got ${seed}`);
  if (!Number.isInteger(testRecord) || testRecord < 1) throw new RangeError(`testRecord must be an integer >= 1, got ${testRecord}`);
  const kappa = Math.sqrt(initVar ?? 1 / (3 * d));
  const key = JSON.stringify([seed, n, T, d, sigma, N, kappa, testRecord]);
  let draw = cache?.get(key);
  if (!draw) {
    draw = drawNoise(seed, n, T, d, sigma, N, kappa, testRecord);
    cache?.set(key, draw);
  }
  const { yClean, order, eps, m, L, G, Omega, testY, testXi } = draw;
  const nT = n * T;
  const C = Float64Array.from(eps);                 // signal: ||mu|| times the coefficients on e1, e2
  const coef = signalCoefficients(yClean, T, rho);
  for (let r = 0; r < nT; r++) {
    C[r * m] += mu * coef[2 * r];
    C[r * m + 1] += mu * coef[2 * r + 1];
  }
  const nuB = new Float64Array(m);
  nuB[0] = 1 / (Math.SQRT2 * mu);
  nuB[1] = -1 / (Math.SQRT2 * mu);
  const z = Float64Array.from({ length: nT }, (_, r) => C[r * m] * nuB[0] + C[r * m + 1] * nuB[1]);
  const noisy = noisyMask(yClean, order, eta);
  const y = yClean.map((v, i) => (noisy[i] ? -v : v));
  const testCoef = signalCoefficients(testY, T, rho).map((x) => mu * x);
  const dirsB = new Float64Array(2 * m);
  dirsB[0] = 1;
  dirsB[m + 1] = 1;
  return {
    n, T, m, N, C, G, L, Omega, z, y, yClean, noisy, nuB, sigma, testCoef, dirsB, testXi, xiCols: testRecord + 1, testY,
    config: { ...c, seed, m, init: "gaussian", init_var: kappa * kappa },
  };
}

/** A problem from gram.export_scenario's JSON (nested lists; the inputs hold no NaN, so no null). */
export function problemFromJSON(s) {
  const flat = (a) => Float64Array.from(a.flat(Infinity));
  const NT = s.n_test * s.T, xiCols = s.test_xi[0][0].length;
  const testXi = new Float64Array(xiCols * NT);                  // (N, T, K) -> (K, N, T)
  s.test_xi.forEach((seq, i) => seq.forEach((tok, t) => tok.forEach((x, k) => { testXi[k * NT + i * s.T + t] = x; })));
  return {
    n: s.n, T: s.T, m: s.m, N: s.n_test, C: flat(s.C), G: flat(s.G), Omega: flat(s.Omega), z: flat(s.z),
    y: flat(s.y), yClean: flat(s.y_clean), noisy: Uint8Array.from(s.noisy, Number), nuB: flat(s.nu_B),
    sigma: s.sigma, testCoef: flat(s.test_coef), dirsB: flat(s.dirs_B), testXi, xiCols,
    testY: flat(s.test_y), config: s.config,
  };
}

/** gram.record_steps_of: every `every`-th step from 0 and the last one. */
export function recordSteps(steps = STEPS, every = 10) {
  const out = [];
  for (let s = 0; s <= steps; s += every) out.push(s);
  if (out[out.length - 1] !== steps) out.push(steps);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Metrics (gram.batch_metrics_np with per_sample=False).

/** log(1 + e^x) as numpy's logaddexp(0, x). */
function softplus(x) {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/**
 * Softmax over each sequence's T scores (in place into `s`, from `a` at offset o), the output
 * f = sum_t s_t z_t; returns f. Attention by token type (x1, x2, x3, the rest) is added to `byType` if given.
 */
function softmaxRow(a, o, T, z, zo, s, byType) {
  let mx = -Infinity;
  for (let t = 0; t < T; t++) if (a[o + t] > mx) mx = a[o + t];
  let sum = 0;
  for (let t = 0; t < T; t++) {
    const e = Math.exp(a[o + t] - mx);
    s[t] = e;
    sum += e;
  }
  let f = 0;
  for (let t = 0; t < T; t++) {
    s[t] /= sum;
    f += s[t] * z[zo + t];
  }
  if (byType) {
    byType[0] += s[0];
    byType[1] += s[1];
    byType[2] += s[2];
    let rest = 0;
    for (let t = 3; t < T; t++) rest += s[t];
    byType[3] += rest;
  }
  return f;
}

const div4 = (v, k) => (k ? v.map((x) => x / k) : new Float64Array(4).fill(NaN));

/** Training metrics of one recorded step from its scores a (nT): train_loss/acc/clean_acc, attn_clean/noisy. */
function trainMetrics(p, a) {
  const { n, T, z, y, yClean, noisy } = p;
  const s = new Float64Array(T);
  const clean = new Float64Array(4), noisyAttn = new Float64Array(4);
  let loss = 0, acc = 0, cleanAcc = 0, finite = true, nNoisy = 0;
  for (let i = 0; i < n; i++) {
    const f = softmaxRow(a, i * T, T, z, i * T, s, noisy[i] ? noisyAttn : clean);
    nNoisy += noisy[i];
    if (!Number.isFinite(f)) finite = false;
    loss += softplus(-y[i] * f);
    if (Math.sign(f) === y[i]) acc++;
    if (Math.sign(f) === yClean[i]) cleanAcc++;
  }
  return {
    train_loss: loss / n, train_acc: finite ? acc / n : NaN, train_clean_acc: finite ? cleanAcc / n : NaN,
    attn_clean: div4(clean, n - nNoisy), attn_noisy: div4(noisyAttn, nNoisy),
  };
}

/**
 * Test metrics of one recorded step from their law given the run (gram.test_metrics_law, joint=False:
 * each recorded step e draws with its own normals test_xi[..., e + 1], exact for every step's metrics but
 * not for their correlation across steps). For a fresh token x = signal + sigma eps, the score x^T q and
 * the head value nu^T x are Gaussian around their signal parts with
 *   Var(nu^T eps) = nu_B^T nu_B,  Cov(q^T eps, nu^T eps) = v^T nu_B,  Var(q^T eps) = v^T v + alpha^T Omega alpha,
 * so score noise = beta xi_0 + r xi_{e+1}, beta = v.nu_B / |nu_B|, r = sqrt(q^T q - beta^2). `aOa` is
 * alpha^T Omega alpha for the step's state.
 */
function testMetrics(p, v, aOa, e) {
  const { N, T, m, nuB, sigma, testCoef, dirsB, testXi, xiCols: K, testY } = p;
  if (e + 1 >= K) throw new RangeError(`the problem's test normals serve ${K - 1} recorded steps, need ${e + 1}`);
  const nn = dot(nuB, 0, nuB, 0, m), qn = dot(v, 0, nuB, 0, m), beta = qn / Math.sqrt(nn);
  const qq = dot(v, 0, v, 0, m) + aOa;                            // q^T q
  const r = Math.sqrt(Math.max(qq - beta * beta, 0));
  const dv0 = dot(dirsB, 0, v, 0, m), dv1 = dot(dirsB, m, v, 0, m), dn0 = dot(dirsB, 0, nuB, 0, m), dn1 = dot(dirsB, m, nuB, 0, m);
  const a = new Float64Array(T), head = new Float64Array(T), s = new Float64Array(T), attn = new Float64Array(4);
  const NT = N * T, sn = sigma * Math.sqrt(nn);
  let loss = 0, acc = 0, margin = 0, finite = true;
  for (let i = 0; i < N; i++) {
    for (let t = 0; t < T; t++) {
      const c = (i * T + t) * 2, x0 = testXi[i * T + t], xe = testXi[NT * (e + 1) + i * T + t];
      head[t] = testCoef[c] * dn0 + testCoef[c + 1] * dn1 + sn * x0;
      a[t] = testCoef[c] * dv0 + testCoef[c + 1] * dv1 + sigma * (beta * x0 + r * xe);
    }
    const f = softmaxRow(a, 0, T, head, 0, s, attn);
    if (!Number.isFinite(f)) finite = false;
    loss += softplus(-testY[i] * f);
    if (Math.sign(f) === testY[i]) acc++;
    margin += testY[i] * f;
  }
  return { test_loss: loss / N, test_acc: finite ? acc / N : NaN, test_margin: margin / N, attn_test: div4(attn, N) };
}

// ---------------------------------------------------------------------------------------------------
// The core (gram.gram_gd for one run). From alpha_0 = 0 and Z_0 = I, a step of gram_gd is
//   v = Z^T G alpha            (query coordinates; scores a = C v)
//   c = C^T delta              (delta = dL/da, the score gradients)
//   alpha <- alpha - lr Z c,   Z <- Z - lr alpha c^T       (both with the old alpha and Z).
// Here it runs in the coordinates of a factor G = L L^T: with beta = L^T alpha and Y = L^T Z (Y_0 = L^T),
//   v = Y^T beta,   beta <- beta - lr Y c,   Y <- Y - lr beta c^T,
// the same recursion with one m x m matrix instead of two (G drops out). alpha = L^-T beta is solved
// for at recorded steps only (the test metrics need alpha^T Omega alpha).
// As in gram_gd, the rank-one updates of Y are kept aside, Y = Y0 - lr sum_k P_k Q_k^T over the j
// pending steps k (P_k the old beta, Q_k = c), and folded into Y0 every `block` steps: a step then reads
// Y0 twice (Y0 c as dot products, Y0^T beta as axpys, four rows at a time) and never writes it.
// benchmarks/bench_js.py compares block sizes (block 1 updates Y0 in place every step: 1.2-1.5x the CPU
// time of block 16 in chromium). Rows of C are read over their non-zero part only (the sampler's C is
// lower trapezoidal: half the work).

/** Default number of steps whose rank-one updates are folded at once. */
export const BLOCK = 16;

/** sum_k A[oa + k] B[ob + k] for k < K, with four partial sums (one sum would wait on each addition). */
function dot(A, oa, B, ob, K) {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, k = 0;
  for (; k + 3 < K; k += 4) {
    s0 += A[oa + k] * B[ob + k];
    s1 += A[oa + k + 1] * B[ob + k + 1];
    s2 += A[oa + k + 2] * B[ob + k + 2];
    s3 += A[oa + k + 3] * B[ob + k + 3];
  }
  for (; k < K; k++) s0 += A[oa + k] * B[ob + k];
  return (s0 + s1) + (s2 + s3);
}

/** y[oy + k] += a X[ox + k] for k < K. */
function axpy(a, X, ox, y, oy, K) {
  for (let k = 0; k < K; k++) y[oy + k] += a * X[ox + k];
}

/** Lower-triangular Cholesky factor L of a symmetric positive definite G (m x m): G = L L^T. */
export function cholesky(G, m) {
  const L = new Float64Array(m * m);
  for (let j = 0; j < m; j++) {
    const djj = G[j * m + j] - dot(L, j * m, L, j * m, j);
    if (!(djj > 0)) throw new RangeError("G is not positive definite (the sampler's G always is)");
    const ljj = Math.sqrt(djj);
    L[j * m + j] = ljj;
    for (let i = j + 1; i < m; i++) L[i * m + j] = (G[i * m + j] - dot(L, i * m, L, j * m, j)) / ljj;
  }
  return L;
}

/** alpha solving U alpha = beta for U = L^T, upper triangular (back substitution over contiguous rows). */
function solveUpper(U, beta, m, alpha) {
  for (let i = m - 1; i >= 0; i--) alpha[i] = (beta[i] - dot(U, i * m + i + 1, alpha, i + 1, m - i - 1)) / U[i * m + i];
  return alpha;
}

/** A^T for A (p x q), row-major. */
function transpose(A, p, q) {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) out[j * p + i] = A[i * q + j];
  return out;
}

/** Where each row of A (p x q) has its non-zero entries: [first, one past the last] (both 0 if none). */
function rowSpans(A, p, q) {
  const first = new Int32Array(p), end = new Int32Array(p);
  for (let r = 0; r < p; r++) {
    let lo = 0, hi = q;
    while (hi > 0 && A[r * q + hi - 1] === 0) hi--;
    while (lo < hi && A[r * q + lo] === 0) lo++;
    first[r] = lo;
    end[r] = hi;
  }
  return { first, end };
}

/** The first column that rows i..i+3 read: the least of their spans' starts (0 without spans). */
function blockFirst(spans, i) {
  if (!spans) return 0;
  const f = spans.first;
  return Math.min(f[i], f[i + 1], f[i + 2], f[i + 3]);
}

/** One past the last column that rows i..i+3 read: the largest of their spans' ends (K without spans). */
function blockEnd(spans, i, K) {
  if (!spans) return K;
  const e = spans.end;
  return Math.max(e[i], e[i + 1], e[i + 2], e[i + 3]);
}

/**
 * y = A x for A (rows x K, row-major), four rows at a time: each x_k is loaded once for four sums. With
 * spans (rowSpans), row r's non-zero entries lie in [first[r], end[r]) and a block of four rows reads the
 * union of its rows' spans.
 */
function matvec(A, rows, K, x, y, spans) {
  let i = 0;
  for (; i + 3 < rows; i += 4) {
    const lo = blockFirst(spans, i), hi = blockEnd(spans, i, K);
    const o0 = i * K, o1 = o0 + K, o2 = o1 + K, o3 = o2 + K;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let k = lo; k < hi; k++) {
      const xk = x[k];
      s0 += A[o0 + k] * xk;
      s1 += A[o1 + k] * xk;
      s2 += A[o2 + k] * xk;
      s3 += A[o3 + k] * xk;
    }
    y[i] = s0;
    y[i + 1] = s1;
    y[i + 2] = s2;
    y[i + 3] = s3;
  }
  for (; i < rows; i++) {
    const lo = spans ? spans.first[i] : 0, hi = spans ? spans.end[i] : K;
    y[i] = dot(A, i * K + lo, x, lo, hi - lo);
  }
}

/** y = A^T x for A (rows x K, row-major) as row axpys, four rows per pass over y (over the union of their spans). */
function matTvec(A, rows, K, x, y, spans) {
  y.fill(0);
  let i = 0;
  for (; i + 3 < rows; i += 4) {
    const lo = blockFirst(spans, i), hi = blockEnd(spans, i, K);
    const x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    const o0 = i * K, o1 = o0 + K, o2 = o1 + K, o3 = o2 + K;
    for (let k = lo; k < hi; k++) y[k] += A[o0 + k] * x0 + A[o1 + k] * x1 + A[o2 + k] * x2 + A[o3 + k] * x3;
  }
  for (; i < rows; i++) {
    const lo = spans ? spans.first[i] : 0, hi = spans ? spans.end[i] : K;
    axpy(x[i], A, i * K + lo, y, lo, hi - lo);
  }
}

/**
 * Gradient descent on one problem and its metrics at the recorded steps.
 * Options: steps (default STEPS = 1000), lr (LR = 5e-3), recordSteps (default every 10th and the last),
 * test (default true: test metrics from their law, joint=False form), onRecord(e, step, out) called after
 * each recorded step (for progressive drawing), block (BLOCK). Returns {steps, train_loss, train_acc,
 * train_clean_acc, attn_clean, attn_noisy, test_loss, test_acc, test_margin, attn_test}: Float64Array(E) per
 * scalar metric and E Float64Array(4) per attention metric (x1, x2, x3, the rest), E = number of recorded
 * steps; NaN for attention on noisy sequences when none is noisy.
 */
export function run(p, { steps = STEPS, lr = LR, recordSteps: rec = recordSteps(steps), test = true, onRecord, block = BLOCK } = {}) {
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`steps must be an integer >= 0, got ${steps}`);
  if (!(lr > 0)) throw new RangeError(`lr must be > 0, got ${lr}`);
  if (!Number.isInteger(block) || block < 1) throw new RangeError(`block must be an integer >= 1, got ${block}`);
  const { n, T, m, C, z, y } = p;
  const nT = n * T, B = block;
  const recorded = [...new Set(rec)].sort((u, w) => u - w);
  if (recorded.some((s) => !Number.isInteger(s) || s < 0 || s > steps)) throw new RangeError(`record steps must lie in [0, ${steps}]`);
  const isRec = new Uint8Array(steps + 1);
  for (const s of recorded) isRec[s] = 1;
  const E = recorded.length;
  if (test && E + 1 > p.xiCols) {
    throw new RangeError(`the problem's test normals serve ${p.xiCols - 1} recorded steps, need ${E} (sample it with testRecord >= ${E})`);
  }
  const out = { steps: recorded, train_loss: new Float64Array(E), train_acc: new Float64Array(E),
    train_clean_acc: new Float64Array(E), attn_clean: [], attn_noisy: [] };
  if (test) Object.assign(out, { test_loss: new Float64Array(E), test_acc: new Float64Array(E), test_margin: new Float64Array(E), attn_test: [] });

  const Lt = transpose(p.L ?? cholesky(p.G, m), m, m);            // L^T
  const Y0 = Float64Array.from(Lt);                               // Y_0 = L^T
  const Oa = new Float64Array(m);                                 // Omega alpha
  const P = new Float64Array(B * m), Q = new Float64Array(B * m); // pending pair k: P[k * m + i], Q[k * m + i]
  let j = 0;                                                      // pending pairs
  const rows = rowSpans(C, nT, m);
  const beta = new Float64Array(m), alpha = new Float64Array(m), c = new Float64Array(m), v = new Float64Array(m);
  const yc = new Float64Array(m), a = new Float64Array(nT), g = new Float64Array(nT), s = new Float64Array(T);
  let e = 0;
  for (let step = 0; step <= steps; step++) {
    const last = step === steps;
    // scores a = C v; per sequence: softmax s, output f, dloss/df = -y / (1 + e^{y f}) / n and
    // the score gradients delta_t = dloss/df * s_t (z_t - f)
    matvec(C, nT, m, v, a, rows);
    for (let i = 0; i < n && !last; i++) {
      const r0 = i * T;
      const f = softmaxRow(a, r0, T, z, r0, s, null);
      const dl = -y[i] / (1 + Math.exp(y[i] * f)) / n;
      for (let t = 0; t < T; t++) g[r0 + t] = dl * s[t] * (z[r0 + t] - f);
    }
    if (isRec[step]) {
      record(out, e, trainMetrics(p, a));
      if (test) {
        solveUpper(Lt, beta, m, alpha);                           // alpha = L^-T beta
        matvec(p.Omega, m, m, alpha, Oa, null);
        record(out, e, testMetrics(p, v, dot(alpha, 0, Oa, 0, m), e));
      }
      if (onRecord) onRecord(e, step, out);
      e++;
    }
    if (last) break;
    // c = C^T delta
    matTvec(C, nT, m, g, c, rows);
    // Y c = Y0 c - lr sum_k P_k (Q_k . c); beta <- beta - lr Y c; push the pair (old beta, c)
    matvec(Y0, m, m, c, yc, null);
    for (let k = 0; k < j; k++) axpy(-lr * dot(Q, k * m, c, 0, m), P, k * m, yc, 0, m);
    P.set(beta, j * m);
    Q.set(c, j * m);
    for (let i = 0; i < m; i++) beta[i] -= lr * yc[i];
    j++;
    // v = Y^T beta = Y0^T beta - lr sum_k Q_k (P_k . beta), with the new pair
    matTvec(Y0, m, m, beta, v, null);
    for (let k = 0; k < j; k++) axpy(-lr * dot(P, k * m, beta, 0, m), Q, k * m, v, 0, m);
    if (j === B) {
      fold(Y0, P, Q, m, B, lr);
      j = 0;
    }
  }
  return out;
}

/** Y0 <- Y0 - lr sum_k P_k Q_k^T over all B pending pairs, in 2 x 2 tiles of Y0 (four sums share each load). */
function fold(Y0, P, Q, m, B, lr) {
  const m2 = m - (m % 2);
  for (let i = 0; i < m2; i += 2) {
    for (let l = 0; l < m2; l += 2) {
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
      for (let k = 0, o = 0; k < B; k++, o += m) {
        const p0 = P[o + i], p1 = P[o + i + 1], q0 = Q[o + l], q1 = Q[o + l + 1];
        s00 += p0 * q0;
        s01 += p0 * q1;
        s10 += p1 * q0;
        s11 += p1 * q1;
      }
      Y0[i * m + l] -= lr * s00;
      Y0[i * m + l + 1] -= lr * s01;
      Y0[(i + 1) * m + l] -= lr * s10;
      Y0[(i + 1) * m + l + 1] -= lr * s11;
    }
  }
  if (m2 < m) {  // m odd: the last row and column
    for (let l = 0; l < m; l++) {
      let sr = 0, sc = 0;
      for (let k = 0, o = 0; k < B; k++, o += m) {
        sr += P[o + m2] * Q[o + l];
        if (l < m2) sc += P[o + l] * Q[o + m2];
      }
      Y0[m2 * m + l] -= lr * sr;
      if (l < m2) Y0[l * m + m2] -= lr * sc;
    }
  }
}

/** Store one recorded step's metrics at index e of the result's per-step arrays. */
function record(out, e, metrics) {
  for (const [k, val] of Object.entries(metrics)) out[k][e] = val;
}
