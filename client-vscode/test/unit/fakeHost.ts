/**
 * A stub of the vscodeapi wrapper (src/host.ts's `Host`): settings from a plain object,
 * messages answered from a script, every call recorded. This is all the `vscode` the unit
 * tests need.
 */

import type { ActiveEditor, Disposable, Host, PickItem, ProgressHandle, SettingValues, StatusBarView } from '../../src/host';

export interface Message {
    level: 'error' | 'warning' | 'info';
    text: string;
    actions: string[];
}

export class FakeProgress implements ProgressHandle {
    reports: { message?: string; increment?: number }[] = [];
    cancelListeners: (() => void)[] = [];
    done = false;
    constructor(
        readonly title: string,
        readonly cancellable: boolean,
    ) {}
    report(value: { message?: string; increment?: number }): void {
        this.reports.push(value);
    }
    onCancel(listener: () => void): void {
        this.cancelListeners.push(listener);
    }
    /** The user presses Cancel. */
    cancel(): void {
        for (const l of this.cancelListeners) l();
    }
}

export class FakeHost implements Host {
    /** User-scope values by key (without the `asmopt.` prefix). */
    user: Record<string, unknown> = {};
    workspace: Record<string, unknown> = {};
    messages: Message[] = [];
    /** Answers for the next messages, in order (undefined: dismissed). */
    answers: (string | undefined)[] = [];
    quickPickAnswer: string | undefined;
    quickPicks: string[][] = [];
    /** Index answered by `pickItem` (undefined: dismissed), and what it was shown. */
    pickAnswer: number | undefined;
    picks: { items: PickItem[]; placeholder: string }[] = [];
    revealed: { uri: string; line: number }[] = [];
    logs: string[] = [];
    statusBar: StatusBarView | undefined;
    context: Record<string, unknown> = {};
    diffs: { left: string; right: string; title: string }[] = [];
    changedDocs: string[] = [];
    files: Record<string, string> = {};
    editor: ActiveEditor | undefined;
    progresses: FakeProgress[] = [];
    clipboard = '';
    settingsOpened: string[] = [];
    outputShown = 0;
    python: string[] | undefined;
    folders = [{ uri: 'file:///ws', fsPath: '/ws', name: 'ws' }];
    private configListeners: ((affects: (s: string) => boolean) => void)[] = [];
    private pythonListeners: (() => void)[] = [];

    log = {
        info: (m: string) => void this.logs.push(`info: ${m}`),
        warn: (m: string) => void this.logs.push(`warn: ${m}`),
        error: (m: string) => void this.logs.push(`error: ${m}`),
    };

    readSetting = (key: string): SettingValues | undefined => ({
        globalValue: this.user[key],
        workspaceValue: this.workspace[key],
    });

    onDidChangeConfiguration(listener: (affects: (section: string) => boolean) => void): Disposable {
        this.configListeners.push(listener);
        return { dispose: () => undefined };
    }

    /** Simulates a settings change of `keys` (full keys, e.g. `asmopt.samples`). */
    changeSettings(...keys: string[]): void {
        const affects = (section: string) => keys.some((k) => k === section || k.startsWith(`${section}.`));
        for (const l of this.configListeners) l(affects);
    }

    workspaceFolders() {
        return this.folders;
    }

    async openSettings(query: string): Promise<void> {
        this.settingsOpened.push(query);
    }

    private say(level: Message['level'], text: string, actions: string[]): Promise<string | undefined> {
        this.messages.push({ level, text, actions });
        return Promise.resolve(this.answers.shift());
    }
    showError(m: string, ...actions: string[]) {
        return this.say('error', m, actions);
    }
    showWarning(m: string, ...actions: string[]) {
        return this.say('warning', m, actions);
    }
    showInfo(m: string, ...actions: string[]) {
        return this.say('info', m, actions);
    }
    async showQuickPick(items: string[]): Promise<string | undefined> {
        this.quickPicks.push(items);
        return this.quickPickAnswer;
    }
    async pickItem(items: PickItem[], placeholder: string): Promise<number | undefined> {
        this.picks.push({ items, placeholder });
        return this.pickAnswer;
    }
    async revealLine(uri: string, line: number): Promise<void> {
        this.revealed.push({ uri, line });
    }
    async copyToClipboard(text: string): Promise<void> {
        this.clipboard = text;
    }
    showOutput(): void {
        this.outputShown++;
    }

    activeEditor(): ActiveEditor | undefined {
        return this.editor;
    }
    async documentText(uri: string): Promise<string | undefined> {
        return this.files[uri];
    }
    async showDiff(left: string, right: string, title: string): Promise<void> {
        this.diffs.push({ left, right, title });
    }
    fireVirtualDocumentChanged(uri: string): void {
        this.changedDocs.push(uri);
    }

    setStatusBar(view: StatusBarView): void {
        this.statusBar = view;
    }
    setContext(key: string, value: unknown): void {
        this.context[key] = value;
    }
    withProgress(title: string, cancellable: boolean, task: (progress: ProgressHandle) => Promise<void>): void {
        const p = new FakeProgress(title, cancellable);
        this.progresses.push(p);
        void task(p).then(() => (p.done = true));
    }

    async pythonInterpreter(): Promise<string[] | undefined> {
        return this.python;
    }
    onDidChangePythonInterpreter(listener: () => void): Disposable {
        this.pythonListeners.push(listener);
        return { dispose: () => undefined };
    }
    changePython(python: string[] | undefined): void {
        this.python = python;
        for (const l of this.pythonListeners) l();
    }

    byLevel(level: Message['level']): Message[] {
        return this.messages.filter((m) => m.level === level);
    }
}

/** Lets pending promise callbacks run. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
