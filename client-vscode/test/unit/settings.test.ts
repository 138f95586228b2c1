import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { CLIENT_SETTINGS, clientSettings, SERVER_SETTINGS, serverSettings } from '../../src/settings';
import { FakeHost } from './fakeHost';

const root = path.resolve(__dirname, '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const contributed: Record<string, { type: string | string[]; default: unknown }> = pkg.contributes.configuration.properties;

describe('settings contributed in package.json', () => {
    it('are exactly the server keys plus the client-only keys', () => {
        const expected = [...Object.keys(SERVER_SETTINGS), ...Object.keys(CLIENT_SETTINGS)].map((k) => `asmopt.${k}`).sort();
        assert.deepEqual(Object.keys(contributed).sort(), expected);
    });

    it("cover every key of protocol.md's Settings section", () => {
        const protocol = path.resolve(root, '..', 'docs', 'protocol.md');
        const text = fs.readFileSync(protocol, 'utf8');
        const section = text.slice(text.indexOf('## Settings'), text.indexOf('## Commands'));
        const body = section.slice(section.indexOf('Settings`:'));
        const list = body.slice(0, body.indexOf('Client-only')).replace(/\([^)]*\)/g, '');
        const keys = [...list.matchAll(/`([a-zA-Z]+)`/g)].map((m) => m[1]);
        for (const key of ['policies', 'model', 'endpoint', 'samples', 'workers', 'benchBudget', 'cflags']) assert.ok(keys.includes(key), key);
        for (const key of keys) assert.ok(`asmopt.${key}` in contributed, `protocol.md names ${key} but package.json lacks asmopt.${key}`);
    });

    it('have defaults that pass the client-side validation', () => {
        const host = new FakeHost();
        for (const [full, schema] of Object.entries(contributed)) host.user[full.slice('asmopt.'.length)] = schema.default;
        assert.deepEqual(serverSettings(host.readSetting).problems, []);
        assert.deepEqual(clientSettings(host.readSetting).problems, []);
    });
});

describe('serverSettings', () => {
    it('sends null for unset keys, so asmopt.toml and server defaults apply', () => {
        const host = new FakeHost();
        host.user.benchBudget = 3;
        host.workspace.policies = ['compiler'];
        const { settings, problems } = serverSettings(host.readSetting);
        assert.deepEqual(problems, []);
        assert.equal(settings.benchBudget, 3);
        assert.deepEqual(settings.policies, ['compiler']);
        assert.equal(settings.samples, null);
        assert.deepEqual(Object.keys(settings).sort(), Object.keys(SERVER_SETTINGS).sort());
        assert.ok(!('interpreter' in settings) && !('serverArgs' in settings) && !('trace.server' in settings));
    });

    it('prefers workspace values over user values', () => {
        const host = new FakeHost();
        host.user.samples = 2;
        host.workspace.samples = 8;
        assert.equal(serverSettings(host.readSetting).settings.samples, 8);
    });

    it('reports a wrong type naming the key, and drops that value', () => {
        const host = new FakeHost();
        host.user.samples = '4';
        host.user.sandbox = 'yes';
        host.user.policies = ['compiler', 'gpt'];
        host.user.temperature = 3;
        host.user.cflags = '-O3 -march=native';
        const { settings, problems } = serverSettings(host.readSetting);
        const keys = problems.map((p) => p.key).sort();
        assert.deepEqual(keys, ['asmopt.policies', 'asmopt.samples', 'asmopt.sandbox', 'asmopt.temperature']);
        const samples = problems.find((p) => p.key === 'asmopt.samples')!;
        assert.match(samples.message, /asmopt\.samples must be an integer of at least 1, not "4"/);
        assert.match(samples.message, /user settings/);
        assert.equal(settings.samples, null);
        assert.equal(settings.cflags, '-O3 -march=native'); // a string is fine for cflags
    });

    it('rejects non-integers for integer keys and non-positive timeouts', () => {
        const host = new FakeHost();
        host.user.workers = 1.5;
        host.user.testTimeout = 0;
        host.user.compare = 'fuzzy';
        const keys = serverSettings(host.readSetting).problems.map((p) => p.key).sort();
        assert.deepEqual(keys, ['asmopt.compare', 'asmopt.testTimeout', 'asmopt.workers']);
    });
});

describe('clientSettings', () => {
    it('falls back to defaults and reports a wrong type', () => {
        const host = new FakeHost();
        host.user.interpreter = '/usr/bin/python3';
        host.workspace['trace.server'] = 'loud';
        const cs = clientSettings(host.readSetting);
        assert.deepEqual(cs.interpreter, []);
        assert.equal(cs.trace, 'off');
        assert.deepEqual(cs.problems.map((p) => p.key).sort(), ['asmopt.interpreter', 'asmopt.trace.server']);
        assert.match(cs.problems.find((p) => p.key === 'asmopt.interpreter')!.message, /must be a list of strings, not "\/usr\/bin\/python3"/);
    });
});
