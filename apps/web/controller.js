// The latency controller of edge/device/controller.py for the page: hold a decode target by
// moving along an elastic file's members (cheapest first). Down one member as soon as the pace
// (the mean of the recent decode times without the largest) exceeds the target; up one only
// after `patience` tokens at the current member, and only when the time predicted there (now x
// the members' measured time ratio; 1.5 when unknown or last seen over `forget` steps ago) stays
// under `upMargin` x the target: a step up that overshoots at once would oscillate. A step up
// that fails (a step down within `patience` tokens) doubles the wait before the next, up to
// `maxWait` tokens; one that holds resets it.
export class LatencyController {
  constructor(members, targetMs, {window = 8, upMargin = 0.85, patience = 16, forget = 64, maxWait = 256} = {}) {
    if (!members.length) throw new Error('a controller needs at least one member');
    Object.assign(this, {members, targetMs, window, upMargin, patience, forget, maxWait});
    this.index = members.length - 1;  // start at the largest: the best quality while it fits
    this.recent = [];
    this.sinceSwitch = 0;
    this.wait = patience;  // tokens at a member before a step up; doubles after a failed one
    this.probing = false;  // the last switch was a step up that has not yet held `patience` tokens
    this.seen = {};  // per member: exponential average of the decode time seen, and the step last seen
    this.step = 0;
  }

  get member() { return this.members[this.index]; }

  /** Record the current member's decode time; the member for the next token. */
  observe(ms) {
    const m = this.member;
    this.recent.push(ms);
    if (this.recent.length > this.window) this.recent.shift();
    this.sinceSwitch += 1;
    this.step += 1;
    this.seen[m] = {ms: this.seen[m] === undefined ? ms : 0.8 * this.seen[m].ms + 0.2 * ms, step: this.step};
    if (this.recent.length < Math.min(3, this.window)) return m;
    const now = pace(this.recent);
    if (this.probing && this.sinceSwitch >= this.patience) {  // the step up held
      this.probing = false;
      this.wait = this.patience;
    }
    if (now > this.targetMs && this.index > 0) {
      if (this.probing) this.wait = Math.min(2 * this.wait, this.maxWait);  // it failed: wait longer
      this.switchTo(this.index - 1);
      this.probing = false;
    } else if (this.index + 1 < this.members.length && this.sinceSwitch >= this.wait) {
      const up = this.members[this.index + 1];
      // a time seen more than `forget` steps ago (perhaps under load since gone) predicts nothing
      const known = this.seen[up] !== undefined && this.step - this.seen[up].step <= this.forget;
      const ratio = known ? this.seen[up].ms / Math.max(this.seen[m].ms, 1e-9) : 1.5;
      if (now * ratio < this.upMargin * this.targetMs) {
        this.switchTo(this.index + 1);
        this.probing = true;
      }
    }
    return this.member;
  }

  switchTo(index) {
    this.index = index;
    this.recent = [];
    this.sinceSwitch = 0;
  }
}

/** Mean of the recent decode times without the largest (preemption counts, one stall does not). */
export function pace(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const kept = sorted.length >= 3 ? sorted.slice(0, -1) : sorted;
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

/** A chooser that always answers `member` (a person pinned it). */
export function pinned(member) {
  return {member, observe: () => member};
}
