/**
 * The one module that calls the `vscode` API (besides the language client in client.ts).
 * Everything else sees `Host` (host.ts): strings and plain objects, testable without VS Code.
 */

import * as vscode from 'vscode';

import type { UriArg } from './commands';
import type { ActiveEditor, Disposable, Host, ProgressHandle, SettingValues, StatusBarView } from './host';
import { SECTION } from './settings';

const PYTHON_EXTENSION = 'ms-python.python';

/** The parts of the Python extension's API we use (both the environments API and the older
 * settings API); the extension is optional, so nothing here is imported from it. */
interface PythonApi {
    environments?: {
        getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined;
        resolveEnvironment(path: string | { path: string }): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
        onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
    };
    settings?: {
        getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] };
        onDidChangeExecutionDetails?: vscode.Event<unknown>;
    };
}

async function pythonApi(): Promise<PythonApi | undefined> {
    const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION);
    if (!ext) return undefined;
    return ext.isActive ? ext.exports : await ext.activate();
}

function toUri(uri: string): vscode.Uri {
    return vscode.Uri.parse(uri, true);
}

/** A command argument as the logic sees it: a `vscode.Uri` becomes a `UriArg`. */
export function flattenArg(arg: unknown): unknown {
    if (arg instanceof vscode.Uri) {
        const flat: UriArg = { kind: 'uri', uri: arg.toString(), scheme: arg.scheme, query: arg.query };
        return flat;
    }
    return arg;
}

export interface HostParts {
    output: vscode.LogOutputChannel;
    statusBar: vscode.StatusBarItem;
    virtualDocumentChanged: vscode.EventEmitter<vscode.Uri>;
}

export function createOutputChannel(): vscode.LogOutputChannel {
    return vscode.window.createOutputChannel('asmopt', { log: true });
}

export function createHostParts(context: vscode.ExtensionContext): HostParts {
    const output = createOutputChannel();
    const statusBar = vscode.window.createStatusBarItem('asmopt.status', vscode.StatusBarAlignment.Left, 0);
    statusBar.name = 'asmopt';
    const virtualDocumentChanged = new vscode.EventEmitter<vscode.Uri>();
    context.subscriptions.push(output, statusBar, virtualDocumentChanged);
    return { output, statusBar, virtualDocumentChanged };
}

export function createHost(parts: HostParts): Host {
    const { output, statusBar, virtualDocumentChanged } = parts;
    return {
        log: {
            info: (m) => output.info(m),
            warn: (m) => output.warn(m),
            error: (m) => output.error(m),
        },

        readSetting: (key, scopeUri) =>
            vscode.workspace.getConfiguration(SECTION, scopeUri ? toUri(scopeUri) : undefined).inspect(key) as SettingValues | undefined,
        onDidChangeConfiguration: (listener) => vscode.workspace.onDidChangeConfiguration((e) => listener((s) => e.affectsConfiguration(s))),
        workspaceFolders: () =>
            (vscode.workspace.workspaceFolders ?? []).map((f) => ({ uri: f.uri.toString(), fsPath: f.uri.fsPath, name: f.name })),
        openSettings: async (query) => {
            await vscode.commands.executeCommand('workbench.action.openSettings', query);
        },

        showError: async (m, ...actions) => vscode.window.showErrorMessage(m, ...actions),
        showWarning: async (m, ...actions) => vscode.window.showWarningMessage(m, ...actions),
        showInfo: async (m, ...actions) => vscode.window.showInformationMessage(m, ...actions),
        showQuickPick: async (items, placeholder) => vscode.window.showQuickPick(items, { placeHolder: placeholder }),
        pickItem: async (items, placeholder) => {
            const picked = await vscode.window.showQuickPick(
                items.map((item, index) => ({ ...item, index })),
                { placeHolder: placeholder, matchOnDescription: true },
            );
            return picked?.index;
        },
        copyToClipboard: async (text) => vscode.env.clipboard.writeText(text),
        showOutput: () => output.show(true),

        activeEditor: (): ActiveEditor | undefined => {
            const editor = vscode.window.activeTextEditor;
            if (!editor) return undefined;
            const uri = editor.document.uri;
            return { uri: uri.toString(), scheme: uri.scheme, languageId: editor.document.languageId, line: editor.selection.active.line };
        },
        documentText: async (uri) => {
            const parsed = toUri(uri);
            const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === parsed.toString());
            if (open) return open.getText();
            try {
                return new TextDecoder().decode(await vscode.workspace.fs.readFile(parsed));
            } catch {
                return undefined;
            }
        },
        revealLine: async (uri, line) => {
            const position = new vscode.Position(line, 0);
            await vscode.window.showTextDocument(toUri(uri), { selection: new vscode.Range(position, position) });
        },
        showDiff: async (left, right, title) => {
            await vscode.commands.executeCommand('vscode.diff', toUri(left), toUri(right), title, { preview: true });
        },
        fireVirtualDocumentChanged: (uri) => virtualDocumentChanged.fire(toUri(uri)),

        setStatusBar: (view: StatusBarView) => {
            statusBar.text = view.text;
            statusBar.tooltip = view.tooltip;
            statusBar.command = view.command;
            statusBar.backgroundColor =
                view.severity === 'error'
                    ? new vscode.ThemeColor('statusBarItem.errorBackground')
                    : view.severity === 'warning'
                      ? new vscode.ThemeColor('statusBarItem.warningBackground')
                      : undefined;
            statusBar.show();
        },
        setContext: (key, value) => void vscode.commands.executeCommand('setContext', key, value),
        withProgress: (title, cancellable, task) => {
            void vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable }, (progress, token) => {
                const handle: ProgressHandle = {
                    report: (value) => progress.report(value),
                    onCancel: (listener) => void token.onCancellationRequested(listener),
                };
                return task(handle);
            });
        },

        pythonInterpreter: async (scopeUri) => {
            const api = await pythonApi();
            const resource = scopeUri ? toUri(scopeUri) : undefined;
            if (api?.environments) {
                const active = api.environments.getActiveEnvironmentPath(resource);
                if (!active) return undefined;
                const env = await api.environments.resolveEnvironment(active);
                const exe = env?.executable?.uri?.fsPath;
                return exe ? [exe] : undefined;
            }
            const command = api?.settings?.getExecutionDetails?.(resource)?.execCommand;
            return command && command.length > 0 ? command : undefined;
        },
        onDidChangePythonInterpreter: (listener): Disposable => {
            let sub: vscode.Disposable | undefined;
            let disposed = false;
            void pythonApi()
                .then((api) => {
                    const event = api?.environments?.onDidChangeActiveEnvironmentPath ?? api?.settings?.onDidChangeExecutionDetails;
                    if (event && !disposed) sub = event(() => listener());
                })
                .catch((err) => output.warn(`Python extension: ${err}`));
            return { dispose: () => ((disposed = true), sub?.dispose()) };
        },
    };
}

export function registerCommand(context: vscode.ExtensionContext, command: string, handler: (...args: unknown[]) => unknown): void {
    context.subscriptions.push(vscode.commands.registerCommand(command, (...args: unknown[]) => handler(...args.map(flattenArg))));
}

/** The read-only `asmopt-candidate:` documents; `content` gets the URI's query. */
export function registerVirtualDocuments(
    context: vscode.ExtensionContext,
    scheme: string,
    changed: vscode.EventEmitter<vscode.Uri>,
    content: (query: string) => string | undefined,
): void {
    const provider: vscode.TextDocumentContentProvider = {
        onDidChange: changed.event,
        provideTextDocumentContent: (uri) => content(uri.query) ?? '# asmopt: this candidate is no longer available; run "asmopt: Show candidate diff" again.\n',
    };
    context.subscriptions.push(vscode.workspace.registerTextDocumentContentProvider(scheme, provider));
}

export function subscribe(context: vscode.ExtensionContext, disposable: Disposable): void {
    context.subscriptions.push({ dispose: () => void disposable.dispose() });
}
