import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { checkInterpreter, IMPORT_CHECK, runProcess, type ProcessResult } from '../../src/pythonCheck';

const fake = (result: ProcessResult) => {
    const calls: { command: string; args: string[] }[] = [];
    return { calls, run: async (command: string, args: string[]) => (calls.push({ command, args }), result) };
};

describe('checkInterpreter', () => {
    it('runs python -c "import asmopt.server" with the interpreter prefix', async () => {
        const f = fake({ code: 0, stdout: '/venv/bin/python\n', stderr: '' });
        const result = await checkInterpreter({ command: ['conda', 'run', 'python'], source: 'setting' }, f.run);
        assert.deepEqual(result, { ok: true, executable: '/venv/bin/python' });
        assert.deepEqual(f.calls, [{ command: 'conda', args: ['run', 'python', '-c', IMPORT_CHECK] }]);
    });

    it('says how to install asmopt when it is missing', async () => {
        const f = fake({ code: 1, stdout: '', stderr: "Traceback...\nModuleNotFoundError: No module named 'asmopt'\n" });
        const result = await checkInterpreter({ command: ['/venv/bin/python'], source: 'python-extension' }, f.run);
        assert.equal(result.ok, false);
        if (result.ok) return;
        assert.equal(result.reason, 'no-asmopt');
        assert.equal(result.fix, "/venv/bin/python -m pip install 'asmopt[server]'");
        assert.match(result.message, /asmopt is not installed in \/venv\/bin\/python/);
        assert.match(result.message, /No module named 'asmopt'/);
        assert.match(result.message, /asmopt\.interpreter/);
    });

    it('says when Python itself cannot run', async () => {
        const f = fake({ code: null, stdout: '', stderr: '', error: 'ENOENT' });
        const result = await checkInterpreter({ command: ['python3'], source: 'default' }, f.run);
        assert.equal(result.ok, false);
        if (result.ok) return;
        assert.equal(result.reason, 'no-python');
        assert.match(result.message, /cannot run Python "python3".*ENOENT/);
        assert.match(result.message, /set asmopt\.interpreter/);
    });
});

describe('runProcess', () => {
    it('reports a missing executable as ENOENT', async () => {
        const result = await runProcess('/nonexistent/python-asmopt-test', ['-c', 'pass'], 5000);
        assert.equal(result.code, null);
        assert.equal(result.error, 'ENOENT');
    });

    it('captures exit code and output', async () => {
        const result = await runProcess(process.execPath, ['-e', 'console.log("hi"); console.error("oops"); process.exit(3)'], 10_000);
        assert.deepEqual([result.code, result.stdout.trim(), result.stderr.trim()], [3, 'hi', 'oops']);
    });

    it('kills a process that runs past the limit', async () => {
        const result = await runProcess(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], 200);
        assert.equal(result.error, 'timeout');
    });
});
