// node control_cli.mjs CASES.json: runs the LatencyController over [{members, target, cost, load,
// extra}, ...] (step i's decode time: cost[member] x load[i] + extra[i]) and prints the member of
// every step, one list per case (tests/apps/test_controller_agree.py compares implementations).
import {readFileSync} from 'node:fs';
import {LatencyController} from './controller.js';

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((c) => {
  const ctl = new LatencyController(c.members, c.target);
  return c.load.map((load, i) => {
    const m = ctl.member;
    ctl.observe(c.cost[m] * load + c.extra[i]);
    return m;
  });
})));
