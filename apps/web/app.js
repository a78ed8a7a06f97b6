// The page: load a bundle, verify every file, choose the variant that fits this browser with the
// bundle's own rule (selection.js), and stream greedy generation from it.
//
// URL parameters: bundle (folder of manifest.json; default ../../bundles/web/), accelerator
// (wasm | webgpu; default webgpu where the browser has it), prompt, autorun (generate at once),
// variant (run this variant instead of the rule's choice: for benchmarks), member (an elastic
// file's member to pin, or `auto` for the latency controller; default: the build's default),
// target (auto's decode target in ms/token; default: the device's limit scaled to this browser).
import {Tokenizer} from '@huggingface/tokenizers';
import {isWebGPUSupported, loadLiteRt} from '@litertjs/core';

import {LatencyController, pinned} from './controller.js';
import {generate, Session} from './runner.js';
import {check, choose, costOf} from './selection.js';
import {fetchAllVerified} from './verify.js';

const params = new URLSearchParams(location.search);
const base = new URL(params.get('bundle') ?? '../../bundles/web/', location.href);
const $ = (id) => document.getElementById(id);
const set = (id, text) => { $(id).textContent = text; };
// What the page reports for tests and scripts (window.matedge), besides the visible text.
const report = window.matedge = {state: 'starting'};

function fail(message) {
  $('error').hidden = false;
  set('error', message);
  set('status', 'stopped');
  report.state = 'error';
  report.error = message;
}

// Facts about this browser for the selection rule. deviceMemory is the device's RAM in GiB
// (Chrome, capped at 8); a quarter of it is what a page may spend on the model.
function deviceFacts(manifest, slowdown) {
  const maxLimit = (key) => Math.max(...manifest.variants.map((v) => v.limits[key] ?? 0));
  return {
    available_memory_mb: navigator.deviceMemory ? navigator.deviceMemory * 1024 / 4 : null,
    decode_ms_per_token: maxLimit('decode_ms_per_token'),
    first_token_ms: maxLimit('first_token_ms'),
    slowdown,
  };
}

async function load(files, variant, accelerator) {
  const start = performance.now();
  const session = await Session.create(files[variant.file], variant, accelerator);
  return {session, compileMs: performance.now() - start};
}

// A few greedy tokens on the cheapest variant: measured ms/token over its predicted ms/token.
async function benchmark(manifest, session, tokenizer) {
  const ids = encode(manifest, tokenizer, 'def ');
  const n = manifest.generation.benchmark_tokens ?? 8;
  const stop = {maxNew: 3, stopIds: [], padId: manifest.tokenizer.pad_id};
  await generate(session, ids, stop);  // warm-up: the first calls set up XNNPACK
  const r = await generate(session, ids, {maxNew: n + 1, stopIds: [], padId: manifest.tokenizer.pad_id});
  return r.decodeMsPerToken / costOf(session.variant, 'decode_ms_per_token');
}

function encode(manifest, tokenizer, text) {
  const ids = tokenizer.encode(text, {add_special_tokens: false}).ids;
  const bos = manifest.tokenizer.add_bos && manifest.tokenizer.bos_id !== null;
  return bos ? [manifest.tokenizer.bos_id, ...ids] : ids;
}

function showVariants(manifest, facts, chosen) {
  const body = $('variants').querySelector('tbody');
  for (const v of manifest.variants) {
    const verdicts = check(v, manifest.selection, facts);
    const row = body.insertRow();
    row.className = v.name === chosen ? 'chosen' : '';
    const here = verdicts.find((x) => x.cost === 'decode_ms_per_token')?.value;
    const cells = [v.name, v.spec, v.val_loss.toFixed(4), (v.bytes / 2 ** 20).toFixed(2),
      `${costOf(v, 'decode_ms_per_token')?.toFixed(3)} (${v.predicted_from})`, here?.toFixed(3) ?? '-',
      verdicts.every((x) => x.ok !== false) ? 'fits' : 'over a limit'];
    for (const c of cells) row.insertCell().textContent = c;
  }
}

// The bundle's elastic file for the chosen variant's device, if its build wrote one: loaded in
// its place (its default member is the chosen spec), with a member picker: each member pinned,
// or `auto`, the latency controller holding the device's decode limit scaled to this browser.
async function loadElastic(manifest, files, variant, accelerator, slowdown) {
  const record = (manifest.elastic ?? []).find((e) => e.device === variant.device && e.backend === 'litert');
  if (!record) return null;
  const {session, compileMs} = await load(files, record, accelerator);
  const members = Object.keys(record.members);
  const target = Number(params.get('target') ?? variant.limits.decode_ms_per_token * slowdown);
  const picker = $('member');
  for (const [value, label] of [['auto', `auto: hold ${target.toFixed(2)} ms/token`],
    ...members.map((m) => [m, `${m}: ${record.members[m]}`])]) {
    picker.add(new Option(label, value));
  }
  picker.value = params.get('member') ?? record.default;
  if (picker.value !== (params.get('member') ?? record.default)) throw new Error(`no member ${params.get('member')} in ${record.file}`);
  $('elastic').hidden = false;
  set('running', '-');
  Object.assign(report, {elastic: record.name, members});
  const chooser = () => (picker.value === 'auto' ? new LatencyController(members, target) : pinned(picker.value));
  return {session, compileMs, record, chooser};
}

async function main() {
  set('bundle', base.href);
  const manifest = await (await fetch(new URL('manifest.json', base))).json();
  set('status', 'checking every file (sha256)');
  const fetchStart = performance.now();
  const files = await fetchAllVerified(base, manifest);  // nothing is used before all pass
  const fetchMs = performance.now() - fetchStart;
  const readJson = (name) => name ? JSON.parse(new TextDecoder().decode(files[name])) : {};
  const tokenizer = new Tokenizer(readJson(manifest.tokenizer.file), readJson(manifest.tokenizer.config));

  const accelerator = params.get('accelerator') ?? (await isWebGPUSupported() ? 'webgpu' : 'wasm');
  set('runtime', `LiteRT.js ${accelerator}`);
  set('status', 'loading the runtime');
  await loadLiteRt(new URL('./node_modules/@litertjs/core/wasm/', location.href).href);

  set('status', 'benchmarking the smallest variant');
  const cheapest = [...manifest.variants].sort((a, b) => costOf(a, 'memory_mb') - costOf(b, 'memory_mb'))[0];
  let {session, compileMs} = await load(files, cheapest, accelerator);
  const slowdown = await benchmark(manifest, session, tokenizer);
  const facts = deviceFacts(manifest, slowdown);
  const forced = manifest.variants.find((v) => v.name === params.get('variant'));
  const choice = forced ? {variant: forced.name, fits: null, reason: `${forced.name}: forced by the URL (variant=)`}
    : choose(manifest, facts);
  const variant = manifest.variants.find((v) => v.name === choice.variant);
  if (variant !== cheapest) {
    session.delete();
    ({session, compileMs} = await load(files, variant, accelerator));
  }
  set('chosen', `${variant.name}: spec ${variant.spec}, ${(variant.bytes / 2 ** 20).toFixed(2)} MiB, ` +
    `val loss ${variant.val_loss.toFixed(4)}`);
  set('why', `${choice.reason} (this browser runs ${slowdown.toFixed(2)}x the predicted ms/token; ` +
    `memory ${facts.available_memory_mb === null ? 'unknown' : facts.available_memory_mb + ' MiB'})`);
  const elastic = await loadElastic(manifest, files, variant, accelerator, slowdown);
  if (elastic) {
    session.delete();
    ({session, compileMs} = elastic);
  }
  const loadMs = fetchMs + compileMs;
  set('load', `${loadMs.toFixed(0)} ms: fetch + sha256 of every file ${fetchMs.toFixed(0)} ms, compile ${compileMs.toFixed(0)} ms`);
  showVariants(manifest, facts, variant.name);
  Object.assign(report, {state: 'ready', variant: variant.name, spec: variant.spec, fits: choice.fits,
                         reason: choice.reason, slowdown, facts, loadMs, fetchMs, compileMs, accelerator});
  set('status', 'ready');

  const run = async () => {
    $('go').disabled = true;
    set('status', 'generating');
    const ids = encode(manifest, tokenizer, $('prompt').value);
    const out = [];
    const chooser = elastic ? elastic.chooser() : null;
    if (chooser) session.useMember(chooser.member);
    const used = [];
    const r = await generate(session, ids, {maxNew: manifest.generation.max_new_tokens,
                                            stopIds: manifest.generation.stop_ids, padId: manifest.tokenizer.pad_id},
      async (id, timing) => {
        out.push(id);
        if (chooser) {
          used.push(session.member);
          set('running', `${session.member} (${elastic.record.members[session.member]})`);
        }
        if (timing.firstTokenMs !== undefined) set('ttft', `${timing.firstTokenMs.toFixed(1)} ms`);
        set('output', $('prompt').value + tokenizer.decode(out, {skip_special_tokens: true}));
        await new Promise((resolve) => setTimeout(resolve, 0));  // let the page repaint the text
      }, chooser);
    set('speed', r.decodeMsPerToken === null ? '-' : `${r.decodeMsPerToken.toFixed(2)} ms/token`);
    Object.assign(report, {state: 'done', promptIds: ids, tokens: r.tokens, firstTokenMs: r.firstTokenMs,
                           decodeMsPerToken: r.decodeMsPerToken, text: $('output').textContent,
                           membersUsed: chooser ? used : null});
    set('status', 'done');
    $('go').disabled = false;
  };
  $('chat').addEventListener('submit', (e) => { e.preventDefault(); run().catch((err) => fail(String(err))); });
  $('go').disabled = false;
  if (params.has('prompt')) $('prompt').value = params.get('prompt');
  if (params.has('autorun')) await run();
}

main().catch((err) => fail(err.message ?? String(err)));
