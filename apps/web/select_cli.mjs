// node select_cli.mjs CASES.json: runs choose() on [{manifest, facts}, ...] and prints the
// results as one JSON list (used by tests/apps/test_selection.py to compare implementations).
import {readFileSync} from 'node:fs';
import {choose} from './selection.js';

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((c) => choose(c.manifest, c.facts))));
