/**
 * The server's life: pick the interpreter, check it has asmopt, start the language client,
 * restart it when a client-only setting changes, push other settings, and stop restarting a
 * server that keeps dying.
 *
 * The language client itself is behind `ClientFactory` (client.ts makes the real one), so the
 * tests drive this with a fake.
 */

import type { Host } from './host';
import { describeSource, displayCommand, resolveInterpreter, serverCommand, type Interpreter, type ServerCommand, type Substitutions } from './interpreter';
import type { StatusParams } from './protocol';
import { checkInterpreter, type RunProcess } from './pythonCheck';
import { RestartLimiter } from './restartLimiter';
import { clientSettings, RESTART_KEYS, SECTION, serverSettings, type SettingProblem } from './settings';
import { statusBarView, type ClientState } from './statusBar';

export const RUNNING_CONTEXT = 'asmopt.serverRunning';

export const Actions = {
    openSettings: 'Open settings',
    copyInstall: 'Copy install command',
    showOutput: 'Show output',
    restart: 'Restart server',
} as const;

/** Called by the language client (client.ts). */
export interface ClientHooks {
    onStatus(params: StatusParams): void;
    /** The connection closed unexpectedly; may the client restart the server? */
    onClosed(): 'restart' | 'stop';
    /** The language client is now running (also after an automatic restart) or stopped. */
    onRunning(running: boolean): void;
    /** The `asmopt` object for workspace/configuration. */
    serverSettings(scopeUri?: string): Record<string, unknown>;
}

export interface ClientStartOptions {
    server: ServerCommand;
    cwd?: string;
    /** initializationOptions.settings */
    settings: Record<string, unknown>;
    hooks: ClientHooks;
}

export interface ClientHandle {
    start(): Promise<void>;
    /** What the server process wrote to stderr lately (for the reason it failed). */
    serverOutput?(): string;
    stop(): Promise<void>;
    /** workspace/didChangeConfiguration with `{settings: {asmopt: settings}}`. */
    sendSettings(settings: Record<string, unknown>): void;
}

/** The last line of `text` that says something (tracebacks end with the error). */
export function lastMeaningfulLine(text: string): string {
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !/^Try '.*--help'/.test(l) && !/^Usage:/.test(l));
    return lines[lines.length - 1] ?? '';
}

export type ClientFactory = (options: ClientStartOptions) => ClientHandle;

export class ServerController {
    private client: ClientHandle | undefined;
    private state: ClientState = { kind: 'stopped', reason: 'Not started yet.' };
    private queue: Promise<void> = Promise.resolve();
    private reported = new Set<string>();
    private stopping = false;
    private starting = false;
    interpreter: Interpreter | undefined;

    constructor(
        private readonly host: Host,
        private readonly createClient: ClientFactory,
        private readonly run: RunProcess,
        readonly limiter = new RestartLimiter(),
    ) {}

    get clientState(): ClientState {
        return this.state;
    }

    get running(): boolean {
        return this.state.kind === 'running';
    }

    /** Starts the server (waits for any start or stop in progress first). */
    start(): Promise<void> {
        return this.enqueue(() => this.doStart());
    }

    stop(): Promise<void> {
        return this.enqueue(() => this.doStop('Stopped.'));
    }

    /** "Restart server": also forgets earlier crashes, so automatic restarts are allowed again. */
    restart(): Promise<void> {
        this.limiter.reset();
        return this.enqueue(async () => {
            await this.doStop('Restarting.');
            await this.doStart();
        });
    }

    /** A configuration change: restart for client-only keys, else push the settings. */
    onConfigurationChanged(affects: (section: string) => boolean): Promise<void> {
        if (!affects(SECTION)) return Promise.resolve();
        if (RESTART_KEYS.some((key) => affects(key))) {
            this.host.log.info('a client setting changed (asmopt.interpreter, asmopt.serverArgs or asmopt.trace.server): restarting the server');
            return this.restart();
        }
        return this.enqueue(async () => {
            const { settings, problems } = serverSettings(this.host.readSetting, this.folderUri());
            this.report(problems, true);
            this.client?.sendSettings(settings);
        });
    }

    /** The Python extension's interpreter changed: matters only without asmopt.interpreter. */
    onPythonInterpreterChanged(): Promise<void> {
        if (clientSettings(this.host.readSetting, this.folderUri()).interpreter.length > 0) return Promise.resolve();
        this.host.log.info("the Python extension's interpreter changed: restarting the server");
        return this.restart();
    }

    private enqueue(task: () => Promise<void>): Promise<void> {
        const next = this.queue.then(task, task);
        this.queue = next.catch(() => undefined);
        return next;
    }

    private folderUri(): string | undefined {
        return this.host.workspaceFolders()[0]?.uri;
    }

    private substitutions(): Substitutions {
        return { workspaceFolder: this.host.workspaceFolders()[0]?.fsPath };
    }

    private setState(state: ClientState): void {
        this.state = state;
        this.host.setStatusBar(statusBarView(state));
        this.host.setContext(RUNNING_CONTEXT, state.kind === 'running');
    }

    private async doStart(): Promise<void> {
        if (this.client) return;
        this.setState({ kind: 'starting' });
        const folder = this.folderUri();
        const cs = clientSettings(this.host.readSetting, folder);
        const ss = serverSettings(this.host.readSetting, folder);
        this.report([...cs.problems, ...ss.problems], false);

        const subs = this.substitutions();
        const interpreter = await resolveInterpreter(cs.interpreter, () => this.host.pythonInterpreter(folder), subs);
        this.interpreter = interpreter;
        this.host.log.info(`Python: ${displayCommand(interpreter.command)} (${describeSource(interpreter.source)})`);

        const check = await checkInterpreter(interpreter, this.run, subs.workspaceFolder);
        if (!check.ok) {
            this.host.log.error(check.message);
            this.setState({ kind: 'stopped', reason: check.message });
            void this.offerFix(check.message, check.fix);
            return;
        }
        this.host.log.info(`asmopt.server imports in ${check.executable}`);

        const server = serverCommand(interpreter, cs.serverArgs, subs);
        this.host.log.info(`starting: ${displayCommand([server.command, ...server.args])}`);
        const client = this.createClient({
            server,
            cwd: subs.workspaceFolder,
            settings: ss.settings,
            hooks: {
                onStatus: (params) => this.onStatus(params),
                onClosed: () => this.onClosed(),
                onRunning: (running) => this.onRunning(running),
                serverSettings: (scopeUri) => {
                    const { settings, problems } = serverSettings(this.host.readSetting, scopeUri ?? folder);
                    this.report(problems, false);
                    return settings;
                },
            },
        });
        this.client = client;
        this.stopping = false;
        this.starting = true;
        try {
            await client.start();
            this.setState({ kind: 'running' });
        } catch (err) {
            // One message, with the cause: the server's last words on stderr (a bad option,
            // a traceback's last line) say more than the client's "connection closed".
            const cause = lastMeaningfulLine(client.serverOutput?.() ?? '') || ((err as Error)?.message ?? String(err));
            const reason = `the server did not start: ${cause}`;
            this.host.log.error(`${reason} (command: ${displayCommand([server.command, ...server.args])})`);
            this.client = undefined;
            this.setState({ kind: 'stopped', reason });
            const hint = cs.serverArgs.length > 0 ? ` (asmopt.serverArgs is ${JSON.stringify(cs.serverArgs)})` : '';
            void this.host.showError(`asmopt: ${reason}${hint}`, Actions.showOutput, Actions.openSettings).then((a) => this.act(a));
            // Stopping a client whose start failed may never settle: do not wait for it.
            void client.stop().catch(() => undefined);
        } finally {
            this.starting = false;
        }
    }

    private async doStop(reason: string): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client) {
            this.stopping = true;
            try {
                await client.stop();
            } catch (err) {
                this.host.log.warn(`stopping the server: ${(err as Error)?.message ?? String(err)}`);
            }
            this.stopping = false;
        }
        this.setState({ kind: 'stopped', reason });
    }

    private onStatus(params: StatusParams): void {
        if (this.state.kind === 'running' || this.state.kind === 'starting') this.setState({ kind: 'running', server: params });
    }

    private onRunning(running: boolean): void {
        if (running && this.client && this.state.kind !== 'running') this.setState({ kind: 'running' });
    }

    private onClosed(): 'restart' | 'stop' {
        // While starting, a closed connection is a failed start: doStart reports it once.
        if (this.stopping || this.starting || !this.client) return 'stop';
        if (this.limiter.recordCrash()) {
            this.host.log.warn('the server exited unexpectedly: restarting it');
            this.setState({ kind: 'starting' });
            return 'restart';
        }
        const message =
            `asmopt: the server stopped ${this.limiter.maxRestarts + 1} times in ${this.limiter.windowMinutes} minutes and ` +
            'will not be restarted automatically. The output shows why; fix that, then restart it.';
        this.host.log.error(message);
        const client = this.client;
        this.client = undefined;
        void client.stop().catch(() => undefined);
        this.setState({ kind: 'stopped', reason: 'It crashed repeatedly; see the output.' });
        void this.host.showError(message, Actions.restart, Actions.showOutput).then((a) => this.act(a));
        return 'stop';
    }

    /** Settings problems, each shown once until it changes (the server asks often). */
    private report(problems: SettingProblem[], fresh: boolean): void {
        if (fresh) this.reported = new Set([...this.reported].filter((m) => problems.some((p) => p.message === m)));
        for (const p of problems) {
            if (this.reported.has(p.message)) continue;
            this.reported.add(p.message);
            this.host.log.warn(p.message);
            void this.host.showWarning(`asmopt: ${p.message}`, Actions.openSettings).then((a) => {
                if (a === Actions.openSettings) void this.host.openSettings(p.key);
            });
        }
    }

    private async offerFix(message: string, fix?: string): Promise<void> {
        const actions: string[] = [Actions.openSettings];
        if (fix) actions.push(Actions.copyInstall);
        actions.push(Actions.showOutput);
        const action = await this.host.showError(message, ...actions);
        if (action === Actions.copyInstall && fix) {
            await this.host.copyToClipboard(fix);
            void this.host.showInfo(`Copied "${fix}". Run it in a terminal, then run "asmopt: Restart server".`, Actions.restart).then((a) => this.act(a));
        } else {
            await this.act(action);
        }
    }

    private async act(action: string | undefined): Promise<void> {
        switch (action) {
            case Actions.openSettings:
                await this.host.openSettings(`${SECTION}.interpreter`);
                break;
            case Actions.showOutput:
                this.host.showOutput();
                break;
            case Actions.restart:
                await this.restart();
                break;
        }
    }
}
