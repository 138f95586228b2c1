// Lists what a .vsix (a zip) contains and checks it: the manifest's contributions, the bundled
// dist/extension.js, no node_modules (everything is bundled by esbuild), and its size.
//
//   node scripts/check-vsix.mjs [asmopt.vsix] [--max-kb 1024]
import * as fs from 'node:fs';
import { inflateRawSync } from 'node:zlib';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--')) ?? 'asmopt.vsix';
const maxKbArg = args.indexOf('--max-kb');
const MAX_KB = maxKbArg >= 0 ? Number(args[maxKbArg + 1]) : 1024;

/** The entries of a zip: name, sizes, and a way to read the data. */
function readZip(buf) {
    let eocd = -1;
    for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65_535); i--) {
        if (buf.readUInt32LE(i) === 0x06054b50) {
            eocd = i;
            break;
        }
    }
    if (eocd < 0) throw new Error(`${file} is not a zip file (no end-of-central-directory record)`);
    const count = buf.readUInt16LE(eocd + 10);
    let at = buf.readUInt32LE(eocd + 16);
    const entries = [];
    for (let n = 0; n < count; n++) {
        if (buf.readUInt32LE(at) !== 0x02014b50) throw new Error(`bad central directory entry at ${at}`);
        const method = buf.readUInt16LE(at + 10);
        const compressed = buf.readUInt32LE(at + 20);
        const size = buf.readUInt32LE(at + 24);
        const nameLen = buf.readUInt16LE(at + 28);
        const extraLen = buf.readUInt16LE(at + 30);
        const commentLen = buf.readUInt16LE(at + 32);
        const local = buf.readUInt32LE(at + 42);
        const name = buf.toString('utf8', at + 46, at + 46 + nameLen);
        entries.push({
            name,
            size,
            compressed,
            read() {
                const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
                const data = buf.subarray(start, start + compressed);
                return method === 8 ? inflateRawSync(data) : Buffer.from(data);
            },
        });
        at += 46 + nameLen + extraLen + commentLen;
    }
    return entries;
}

const buf = fs.readFileSync(file);
const entries = readZip(buf);
const failures = [];
const check = (ok, message) => ok || failures.push(message);

console.log(`${file}: ${(buf.length / 1024).toFixed(1)} KiB, ${entries.length} files`);
for (const e of entries) console.log(`  ${String(e.size).padStart(9)}  ${e.name}`);

const byName = new Map(entries.map((e) => [e.name, e]));
const manifest = byName.get('extension/package.json');
check(manifest, 'extension/package.json is missing');
check(byName.has('extension.vsixmanifest'), 'extension.vsixmanifest is missing');
const main = byName.get('extension/dist/extension.js');
check(main && main.size > 10_000, 'extension/dist/extension.js is missing or empty');
check(!entries.some((e) => e.name.includes('node_modules/')), 'node_modules/ is packaged: everything should be bundled into dist/extension.js');
check(!entries.some((e) => /^extension\/(src|test|out)\//.test(e.name)), 'sources or tests are packaged (see .vscodeignore)');
check(buf.length <= MAX_KB * 1024, `the package is ${(buf.length / 1024).toFixed(0)} KiB, over the limit of ${MAX_KB} KiB`);

if (manifest) {
    const pkg = JSON.parse(manifest.read().toString('utf8'));
    const c = pkg.contributes ?? {};
    check(pkg.main === './dist/extension.js', `main is ${pkg.main}, not ./dist/extension.js`);
    const commands = (c.commands ?? []).map((x) => x.command);
    for (const cmd of ['asmopt.optimizeFunction', 'asmopt.optimizeFile', 'asmopt.applyCandidate', 'asmopt.showCandidateDiff', 'asmopt.restartServer', 'asmopt.showOutput', 'asmopt.showHottestFunctions']) {
        check(commands.includes(cmd), `command ${cmd} is not contributed`);
    }
    const props = Object.keys(c.configuration?.properties ?? {});
    const settings = ['interpreter', 'serverArgs', 'trace.server', 'policies', 'model', 'endpoint', 'samples', 'temperature', 'maxNewTokens', 'llmTimeout', 'testTimeout', 'sandbox', 'compiler', 'cflags', 'allowNative', 'ciTarget', 'benchBudget', 'compare', 'tolerance', 'workers'];
    for (const key of settings) check(props.includes(`asmopt.${key}`), `setting asmopt.${key} is not contributed`);
    const asm = (c.languages ?? []).find((l) => l.id === 'asm');
    check(asm && ['.s', '.S', '.asm'].every((x) => asm.extensions.includes(x)), 'language asm with .s/.S/.asm is not contributed');
    const grammar = (c.grammars ?? []).find((g) => g.language === 'asm');
    check(grammar && byName.has(`extension/${grammar.path.replace(/^\.\//, '')}`), 'the asm grammar file is missing');
    check(byName.has('extension/language-configuration.json'), 'language-configuration.json is missing');
    for (const ev of ['onLanguage:c', 'onLanguage:asm', 'workspaceContains:asmopt.toml']) {
        check((pkg.activationEvents ?? []).includes(ev), `activation event ${ev} is missing`);
    }
    check((c.menus?.['editor/title'] ?? []).some((m) => m.command === 'asmopt.applyCandidate' && /asmopt-candidate/.test(m.when)), 'no "Apply candidate" button on the candidate diff');
}

if (failures.length) {
    console.error(`\ncheck-vsix: ${failures.length} problem(s):`);
    for (const f of failures) console.error(`  - ${f}`);
    process.exit(1);
}
console.log('\ncheck-vsix: ok');
