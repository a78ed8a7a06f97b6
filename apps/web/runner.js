// Greedy generation on LiteRT.js from a bundle variant's entry points.
//
// Inputs are found by their meaning (the names in the variant's `entry_points`), and fed under
// the file's own tensor names (`tflite_name`), so the same code runs the project's convention
// (prefill(tokens) / decode(token, position, k_cache, v_cache)) and LiteRT-LM's (tokens,
// input_pos, mask, kv_cache_k_i / kv_cache_v_i). Every output that is not `logits` is state:
// it is passed back, under the same meaning, to the next call.
import {Tensor, loadAndCompile} from '@litertjs/core';

const TOKENS = ['tokens', 'token'];
// The additive mask value of exporters/litert.py: finite (a row of -inf would give NaN).
const MASK_VALUE = -3.0e4;
const POSITION = ['input_pos', 'position'];

const ARRAYS = {float32: Float32Array, int32: Int32Array};

function zeros(t) {
  const Array = ARRAYS[t.dtype];
  if (!Array) throw new Error(`input ${t.name}: dtype ${t.dtype} is not supported here`);
  return new Array(t.shape.reduce((a, b) => a * b, 1));
}

function argmax(values, offset, size) {
  let best = 0;
  for (let i = 1; i < size; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

/** The windows N of entry points named `${prefix}${N}`, smallest first. */
function windowsOf(entryPoints, prefix) {
  return Object.keys(entryPoints).filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
    .map((n) => Number(n.slice(prefix.length))).sort((a, b) => a - b);
}

export class Session {
  /** Compile `bytes` (a verified .tflite) for `variant`'s entry points on `accelerator`. */
  static async create(bytes, variant, accelerator) {
    const model = await loadAndCompile(bytes, {accelerator});
    return new Session(model, variant);
  }

  constructor(model, variant) {
    this.model = model;
    this.variant = variant;
    // Prefill entry points by length: `prefill` alone, or LiteRT-LM's prefill_<T> (one per T).
    this.prefills = Object.keys(variant.entry_points).filter((n) => n.startsWith('prefill'))
      .map((name) => ({name, len: variant.entry_points[name].inputs.find((t) => TOKENS.includes(t.name)).shape[1]}))
      .sort((a, b) => a.len - b.len);
    this.prefillLen = this.prefills[this.prefills.length - 1].len;
    this.context = variant.context;
    this.state = new Map();
    this.decodeName = 'decode';
    // LiteRT-LM files may add decode_w<N>: attention over the first N cache slots only, the same
    // logits below N at a fraction of the cost; decode uses the smallest window past its position.
    this.windows = windowsOf(variant.entry_points, 'decode_w');
    this.windowPrefix = 'decode_w';
    this.member = null;
    if (variant.members) this.useMember(variant.default);  // an elastic file: several members
  }

  /**
   * Elastic files: run `member`'s entry points (prefill_<m>, decode_<m>) from now on. The caches
   * are state shared by every member, so switching between tokens reads what others wrote.
   */
  useMember(member) {
    const eps = this.variant.entry_points;
    if (!eps[`decode_${member}`]) throw new Error(`no member ${member} (has: ${Object.keys(this.variant.members)})`);
    const name = `prefill_${member}`;
    this.prefills = [{name, len: eps[name].inputs.find((t) => TOKENS.includes(t.name)).shape[1]}];
    this.prefillLen = this.prefills[0].len;
    this.decodeName = `decode_${member}`;
    this.windowPrefix = `decode_${member}_w`;  // elastic files carry a window set per member
    this.windows = windowsOf(eps, this.windowPrefix);
    this.member = member;
  }

  // One entry point call: {meaning: TypedArray or Tensor} -> logits (Float32Array); keeps state.
  async call(signature, given) {
    const ep = this.variant.entry_points[signature];
    const inputs = {};
    const made = [];
    for (const t of ep.inputs) {
      // A state input not produced yet (a cache passed into the first prefill) starts as zeros.
      let value = given[t.name] ?? this.state.get(t.name) ?? zeros(t);
      if (!(value instanceof Tensor)) {
        value = new Tensor(value, t.shape);
        made.push(value);
      }
      inputs[t.tflite_name ?? t.name] = value;
    }
    const out = await this.model.run(signature, inputs);
    for (const tensor of made) tensor.delete();
    let logits = null;
    for (const t of ep.outputs) {
      const tensor = out[t.tflite_name ?? t.name];
      if (t.name === 'logits') {
        logits = tensor.toTypedArray().slice();
        tensor.delete();
      } else {
        this.state.get(t.name)?.delete();
        this.state.set(t.name, tensor);
      }
    }
    return logits;
  }

  // The causal mask row(s) for positions [start, start + n) over `width` cache slots (default:
  // the whole cache): 0 where a query may look, MASK_VALUE elsewhere.
  mask(start, n, width = this.context) {
    const m = new Float32Array(n * width).fill(MASK_VALUE);
    for (let r = 0; r < n; r++) m.fill(0, r * width, r * width + start + r + 1);
    return m;
  }

  /** Prefill `ids` (right-padded with `padId`); the id of the first generated token. */
  async prefill(ids, padId) {
    const entry = this.prefills.find((p) => p.len >= ids.length);  // the shortest that holds the prompt
    if (!entry && this.member) return this.prefillChunks(ids, padId);
    if (!entry) throw new Error(`prompt of ${ids.length} tokens; this variant prefills at most ${this.prefillLen}`);
    const n = entry.len;
    const tokens = new Int32Array(n).fill(padId ?? 0);
    tokens.set(ids);
    const positions = Int32Array.from({length: n}, (_, i) => i);
    const hasLogits = this.variant.entry_points[entry.name].outputs.some((t) => t.name === 'logits');
    if (!hasLogits) {
      // LiteRT-LM's convention: prefill fills the cache only; the prompt's last token goes
      // through decode, whose logits give the first new token.
      if (ids.length > 1) {
        tokens.fill(padId ?? 0, ids.length - 1);
        await this.call(entry.name, {tokens, input_pos: positions, mask: this.mask(0, n)});
      }
      return this.decode(ids[ids.length - 1], ids.length - 1);
    }
    const logits = await this.call(entry.name, {tokens, token: tokens, input_pos: positions, position: positions,
                                                mask: this.mask(0, n)});
    const vocab = logits.length / n;
    return argmax(logits, (ids.length - 1) * vocab, vocab);
  }

  /**
   * Elastic files: a prompt longer than one prefill call goes in P-token chunks at their
   * positions (the last one right-padded: its padded slots are rewritten before any query sees
   * them), or one token at a time where a chunk would pass the cache's end.
   */
  async prefillChunks(ids, padId) {
    const {name, len: P} = this.prefills[0];
    let next = null;
    for (let i = 0; i < ids.length;) {
      const n = Math.min(P, ids.length - i);
      if (n === 1 || i + P > this.context) {
        next = await this.decode(ids[i], i);
        i += 1;
        continue;
      }
      const tokens = new Int32Array(P).fill(padId ?? 0);
      tokens.set(ids.slice(i, i + n));
      const positions = Int32Array.from({length: P}, (_, j) => i + j);
      const logits = await this.call(name, {tokens, input_pos: positions, mask: this.mask(i, P)});
      const vocab = logits.length / P;
      next = argmax(logits, (n - 1) * vocab, vocab);
      i += n;
    }
    return next;
  }

  /** Decode `token` at `position`; the id of the next token. */
  async decode(token, position) {
    const tokens = Int32Array.of(token);
    const pos = Int32Array.of(position);
    const window = this.windows.find((w) => position < w);
    const name = window ? `${this.windowPrefix}${window}` : this.decodeName;
    const logits = await this.call(name, {tokens, token: tokens, input_pos: pos, position: pos,
                                          mask: this.mask(position, 1, window ?? this.context)});
    return argmax(logits, 0, logits.length);
  }

  delete() {
    for (const t of this.state.values()) t.delete();
    this.state.clear();
    this.model.delete();
  }
}

/**
 * Greedy generation: prefill `ids`, then decode until a stop id, `maxNew` tokens or the end of
 * the context. `onToken(id, timing)` is awaited for every token as it is produced (the page
 * repaints there); the timings count the model calls only. With an elastic session, `chooser`
 * ({member, observe(ms)}: a pinned member or controller.js) picks the member of every decode.
 */
export async function generate(session, ids, {maxNew, stopIds, padId}, onToken = async () => {}, chooser = null) {
  let start = performance.now();
  let token = await session.prefill(ids, padId);
  const firstTokenMs = performance.now() - start;
  const out = [token];
  await onToken(token, {firstTokenMs});
  let decodeMs = 0;
  let position = ids.length;
  while (out.length < maxNew && !stopIds.includes(token) && position < session.context) {
    if (chooser) session.useMember(chooser.member);  // elastic: the member for this token
    start = performance.now();
    token = await session.decode(token, position++);
    const ms = performance.now() - start;
    decodeMs += ms;
    chooser?.observe(ms);
    out.push(token);
    await onToken(token, {});
  }
  const decoded = out.length - 1;
  return {tokens: out, firstTokenMs, decodeMsPerToken: decoded > 0 ? decodeMs / decoded : null};
}
