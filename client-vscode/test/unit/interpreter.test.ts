import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { displayCommand, resolveInterpreter, serverCommand, substitute } from '../../src/interpreter';

const subs = { workspaceFolder: '/ws', userHome: '/home/u', env: { VENV: '/opt/venv' } };

describe('resolveInterpreter', () => {
    it('uses asmopt.interpreter first, without asking the Python extension', async () => {
        let asked = false;
        const interp = await resolveInterpreter(['${workspaceFolder}/.venv/bin/python'], async () => ((asked = true), ['/other']), subs);
        assert.deepEqual(interp, { command: ['/ws/.venv/bin/python'], source: 'setting' });
        assert.equal(asked, false);
    });

    it("then the Python extension's active interpreter", async () => {
        const interp = await resolveInterpreter([], async () => ['/usr/local/bin/python3.12'], subs);
        assert.deepEqual(interp, { command: ['/usr/local/bin/python3.12'], source: 'python-extension' });
    });

    it('then python3, also when the Python extension is missing or fails', async () => {
        assert.deepEqual(await resolveInterpreter([], async () => undefined, subs), { command: ['python3'], source: 'default' });
        assert.deepEqual(
            await resolveInterpreter([''], async () => {
                throw new Error('extension crashed');
            }, subs),
            { command: ['python3'], source: 'default' },
        );
    });

    it('keeps a multi-part command (conda run ...)', async () => {
        const interp = await resolveInterpreter(['conda', 'run', '-n', 'opt', 'python'], async () => undefined, subs);
        assert.deepEqual(interp.command, ['conda', 'run', '-n', 'opt', 'python']);
    });
});

describe('serverCommand', () => {
    it('is <python> -m asmopt.cli serve <serverArgs>', () => {
        const cmd = serverCommand({ command: ['conda', 'run', 'python'], source: 'setting' }, ['--log-file', '${workspaceFolder}/lsp.log'], subs);
        assert.deepEqual(cmd, { command: 'conda', args: ['run', 'python', '-m', 'asmopt.cli', 'serve', '--log-file', '/ws/lsp.log'] });
    });
});

describe('substitute', () => {
    it('expands workspaceFolder, userHome, env and ~', () => {
        assert.equal(substitute('${userHome}/x', subs), '/home/u/x');
        assert.equal(substitute('~/venv/bin/python', subs), '/home/u/venv/bin/python');
        assert.equal(substitute('${env:VENV}/bin/python', subs), '/opt/venv/bin/python');
        assert.equal(substitute('${workspaceFolder}', {}), '${workspaceFolder}');
    });
});

describe('displayCommand', () => {
    it('quotes what a shell would split', () => {
        assert.equal(displayCommand(['/my env/python', '-m']), "'/my env/python' -m");
    });
});
