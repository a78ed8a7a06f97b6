// The bundle's selection rule in JavaScript: the same function as edge/bundle/selection.py
// (the reference) and apps/native/selection.hpp. The rule itself is data in manifest.json
// ("selection"); tests/apps/test_selection.py runs all three on one table of cases.

/** A finite number, or null (unknown). */
function known(x) {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/** The variant's cost `name`: measured when the build measured it, else predicted. */
export function costOf(variant, name) {
  for (const source of ['measured', 'predicted']) {
    const v = known((variant[source] || {})[name]);
    if (v !== null) return v;
  }
  return null;
}

/** Each constraint's verdict for one variant: {cost, value, limit, ok (null when unknown)}. */
export function check(variant, rule, facts) {
  return rule.constraints.map((c) => {
    const limit = known(facts[c.limit]);
    const cost = costOf(variant, c.cost);
    const scale = c.scale ? known(facts[c.scale]) : null;
    const value = cost === null ? null : cost * (scale === null ? 1 : scale);
    const ok = limit === null || value === null ? null : value <= limit;
    return {cost: c.cost, value, limit, ok};
  });
}

function compareKeys(a, b, rule) {
  for (const k of rule.order) {
    const x = known(a[k]) ?? Infinity;
    const y = known(b[k]) ?? Infinity;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function explain(variant, verdicts, head) {
  const parts = verdicts.map((x) => x.ok === null ? `${x.cost} unknown`
    : `${x.cost} ${x.value.toPrecision(3)} ${x.ok ? '<=' : '>'} ${x.limit.toPrecision(3)}`);
  return `${variant.name} (${variant.spec ?? '?'}): ${head}: ${parts.join(', ')}`;
}

/**
 * The variant this device runs: {variant, fits, reason}.
 * Best quality first (rule.order ascending); the first whose every known constraint holds
 * wins; when none does, the one with the least rule.otherwise cost.
 */
export function choose(manifest, facts) {
  const rule = manifest.selection;
  const variants = [...manifest.variants].sort((a, b) => compareKeys(a, b, rule));
  if (variants.length === 0) throw new Error('the manifest lists no variants');
  for (const v of variants) {
    const verdicts = check(v, rule, facts);
    if (verdicts.every((x) => x.ok !== false)) {
      return {variant: v.name, fits: true, reason: explain(v, verdicts, 'fits')};
    }
  }
  const key = rule.otherwise;
  const costKey = (v) => costOf(v, key) ?? Infinity;
  const cheapest = variants.reduce((best, v) =>
    costKey(v) < costKey(best) || (costKey(v) === costKey(best) && v.name < best.name) ? v : best);
  return {variant: cheapest.name, fits: false,
          reason: explain(cheapest, check(cheapest, rule, facts), `nothing fits; least ${key}`)};
}
