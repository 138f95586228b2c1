import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { ProcessResult } from '../../src/pythonCheck';
import { RestartLimiter } from '../../src/restartLimiter';
import { Actions, RUNNING_CONTEXT, ServerController, type ClientHandle, type ClientStartOptions } from '../../src/serverController';
import { FakeHost, settle } from './fakeHost';

class FakeClient implements ClientHandle {
    started = 0;
    stopped = 0;
    sent: Record<string, unknown>[] = [];
    failStart: Error | undefined;
    constructor(readonly options: ClientStartOptions) {}
    async start() {
        this.started++;
        if (this.failStart) throw this.failStart;
    }
    async stop() {
        this.stopped++;
    }
    sendSettings(settings: Record<string, unknown>) {
        this.sent.push(settings);
    }
}

const OK: ProcessResult = { code: 0, stdout: '/venv/bin/python\n', stderr: '' };

function setup(check: ProcessResult = OK) {
    const host = new FakeHost();
    const clients: FakeClient[] = [];
    const checks: string[][] = [];
    let t = 0;
    const controller = new ServerController(
        host,
        (options) => {
            const c = new FakeClient(options);
            clients.push(c);
            return c;
        },
        async (command, args) => (checks.push([command, ...args]), check),
        new RestartLimiter(3, 180_000, () => (t += 1000)),
    );
    host.onDidChangeConfiguration((affects) => void controller.onConfigurationChanged(affects));
    host.onDidChangePythonInterpreter(() => void controller.onPythonInterpreterChanged());
    return { host, controller, clients, checks };
}

describe('ServerController start', () => {
    it('checks the interpreter, then starts `python -m asmopt.cli serve` with the settings', async () => {
        const { host, controller, clients, checks } = setup();
        host.user.interpreter = ['${workspaceFolder}/.venv/bin/python'];
        host.user.serverArgs = ['--log-level', 'debug'];
        host.user.benchBudget = 3;
        await controller.start();
        assert.equal(checks[0][0], '/ws/.venv/bin/python');
        assert.deepEqual(checks[0].slice(1, 2), ['-c']);
        assert.equal(clients.length, 1);
        const opts = clients[0].options;
        assert.deepEqual(opts.server, { command: '/ws/.venv/bin/python', args: ['-m', 'asmopt.cli', 'serve', '--log-level', 'debug'] });
        assert.equal(opts.cwd, '/ws');
        assert.equal(opts.settings.benchBudget, 3);
        assert.equal(opts.settings.samples, null);
        assert.equal(clients[0].started, 1);
        assert.equal(controller.clientState.kind, 'running');
        assert.equal(host.context[RUNNING_CONTEXT], true);
        assert.equal(host.statusBar?.text, '$(zap) asmopt');
    });

    it('uses the Python extension interpreter when the setting is empty', async () => {
        const { host, controller, clients } = setup();
        host.python = ['/home/u/.pyenv/versions/3.12/bin/python'];
        await controller.start();
        assert.equal(clients[0].options.server.command, '/home/u/.pyenv/versions/3.12/bin/python');
    });

    it('no Python: a message naming the fix and Open settings; no server, no loop', async () => {
        const { host, controller, clients } = setup({ code: null, stdout: '', stderr: '', error: 'ENOENT' });
        host.answers = [Actions.openSettings];
        await controller.start();
        await settle();
        assert.equal(clients.length, 0);
        const [err] = host.byLevel('error');
        assert.match(err.text, /cannot run Python "python3"/);
        assert.ok(err.actions.includes(Actions.openSettings));
        assert.deepEqual(host.settingsOpened, ['asmopt.interpreter']);
        assert.equal(controller.clientState.kind, 'stopped');
        assert.equal(host.statusBar?.text, '$(error) asmopt: stopped');
        assert.equal(host.context[RUNNING_CONTEXT], false);
    });

    it("a Python without asmopt: the pip command, which can be copied", async () => {
        const { host, controller, clients } = setup({ code: 1, stdout: '', stderr: "ModuleNotFoundError: No module named 'asmopt'" });
        host.user.interpreter = ['/usr/bin/python3'];
        host.answers = [Actions.copyInstall];
        await controller.start();
        await settle();
        assert.equal(clients.length, 0);
        const [err] = host.byLevel('error');
        assert.match(err.text, /asmopt is not installed in \/usr\/bin\/python3 \(from the asmopt\.interpreter setting\)/);
        assert.match(err.text, /\/usr\/bin\/python3 -m pip install 'asmopt\[server\]'/);
        assert.deepEqual(err.actions, [Actions.openSettings, Actions.copyInstall, Actions.showOutput]);
        assert.equal(host.clipboard, "/usr/bin/python3 -m pip install 'asmopt[server]'");
    });

    it('a server that fails to start: one message, with what the server said', async () => {
        const host = new FakeHost();
        host.user.serverArgs = ['--bogus'];
        const stderr = "Usage: asmopt serve [OPTIONS]\nTry 'asmopt serve --help' for help.\n\nError: No such option '--bogus'.\n";
        let closedDuringStart: string | undefined;
        const controller = new ServerController(
            host,
            (options) =>
                Object.assign(new FakeClient(options), {
                    serverOutput: () => stderr,
                    start: async () => {
                        // the client sees the connection close while it starts: no restart
                        closedDuringStart = options.hooks.onClosed();
                        throw new Error('Connection to server got closed');
                    },
                }),
            async () => OK,
        );
        await controller.start();
        assert.equal(closedDuringStart, 'stop');
        assert.equal(controller.clientState.kind, 'stopped');
        assert.equal(host.messages.length, 1);
        const [err] = host.byLevel('error');
        assert.match(err.text, /did not start: Error: No such option '--bogus'\. \(asmopt\.serverArgs is \["--bogus"\]\)/);
        assert.ok(err.actions.includes(Actions.showOutput));
    });

    it('a failed start without output names the error', async () => {
        const host = new FakeHost();
        const controller = new ServerController(
            host,
            (options) => Object.assign(new FakeClient(options), { failStart: new Error('spawn ENOENT') }),
            async () => OK,
        );
        await controller.start();
        const [err] = host.byLevel('error');
        assert.match(err.text, /did not start: spawn ENOENT/);
    });

    it('reports a setting of the wrong type by its key, once', async () => {
        const { host, controller, clients } = setup();
        host.user.samples = 'four';
        await controller.start();
        clients[0].options.hooks.serverSettings(); // the server pulls settings again
        const warnings = host.byLevel('warning');
        assert.equal(warnings.length, 1);
        assert.match(warnings[0].text, /asmopt\.samples must be an integer/);
        assert.deepEqual(warnings[0].actions, [Actions.openSettings]);
        assert.equal(clients[0].options.settings.samples, null);
    });
});

describe('ServerController crashes', () => {
    it('restarts at most 3 times, then stops with a message offering Restart server', async () => {
        const { host, controller, clients } = setup();
        await controller.start();
        const hooks = clients[0].options.hooks;
        assert.deepEqual([hooks.onClosed(), hooks.onClosed(), hooks.onClosed()], ['restart', 'restart', 'restart']);
        hooks.onRunning(true);
        assert.equal(hooks.onClosed(), 'stop');
        await settle();
        assert.equal(controller.clientState.kind, 'stopped');
        const [err] = host.byLevel('error');
        assert.match(err.text, /stopped 4 times in 3 minutes and will not be restarted automatically/);
        assert.deepEqual(err.actions, [Actions.restart, Actions.showOutput]);
        assert.equal(host.statusBar?.command, 'asmopt.restartServer');
    });

    it('"Restart server" after that works and allows automatic restarts again', async () => {
        const { host, controller, clients } = setup();
        host.answers = [Actions.restart];
        await controller.start();
        const hooks = clients[0].options.hooks;
        for (let i = 0; i < 4; i++) hooks.onClosed();
        await settle();
        await settle();
        assert.equal(clients.length, 2);
        assert.equal(clients[1].started, 1);
        assert.equal(controller.clientState.kind, 'running');
        assert.equal(clients[1].options.hooks.onClosed(), 'restart');
    });

    it('a deliberate stop is not a crash', async () => {
        const { controller, clients } = setup();
        await controller.start();
        const hooks = clients[0].options.hooks;
        await controller.stop();
        assert.equal(hooks.onClosed(), 'stop');
        assert.equal(clients[0].stopped, 1);
    });
});

describe('ServerController settings changes', () => {
    it('restarts on asmopt.interpreter / serverArgs / trace.server', async () => {
        const { host, controller, clients } = setup();
        await controller.start();
        for (const key of ['asmopt.interpreter', 'asmopt.serverArgs', 'asmopt.trace.server']) {
            host.changeSettings(key);
            await settle();
            await controller.start(); // waits for the queued restart
        }
        assert.equal(clients.length, 4);
        assert.deepEqual(clients.map((c) => c.stopped), [1, 1, 1, 0]);
    });

    it('pushes other settings with didChangeConfiguration, without a restart', async () => {
        const { host, controller, clients } = setup();
        await controller.start();
        host.user.samples = 8;
        host.changeSettings('asmopt.samples');
        await controller.start();
        assert.equal(clients.length, 1);
        assert.equal(clients[0].sent.length, 1);
        assert.equal(clients[0].sent[0].samples, 8);
    });

    it('ignores changes outside asmopt', async () => {
        const { host, controller, clients } = setup();
        await controller.start();
        host.changeSettings('editor.fontSize');
        await controller.start();
        assert.deepEqual([clients.length, clients[0].sent.length], [1, 0]);
    });

    it("restarts when the Python extension's interpreter changes, unless asmopt.interpreter is set", async () => {
        const { host, controller, clients } = setup();
        await controller.start();
        host.changePython(['/new/python']);
        await settle();
        await controller.start();
        assert.equal(clients.length, 2);
        assert.equal(clients[1].options.server.command, '/new/python');
        host.user.interpreter = ['/pinned/python'];
        host.changePython(['/newer/python']);
        await controller.start();
        assert.equal(clients.length, 2);
    });
});
