/**
 * What the extension needs from VS Code, as plain data and strings.
 *
 * `vscodeapi.ts` implements this with the real `vscode` module; the unit tests implement it
 * with a fake that records calls. Nothing else in src/ (except `client.ts`, which owns the
 * LanguageClient) imports `vscode`, so the logic runs under plain `node --test`.
 */

export interface Disposable {
    dispose(): unknown;
}

/** The values one setting has in each scope (`WorkspaceConfiguration.inspect`). */
export interface SettingValues {
    defaultValue?: unknown;
    globalValue?: unknown;
    workspaceValue?: unknown;
    workspaceFolderValue?: unknown;
}

/** Reads `asmopt.<key>` for a resource (a URI string) or the window. */
export type SettingsReader = (key: string, scopeUri?: string) => SettingValues | undefined;

export interface WorkspaceFolder {
    uri: string;
    fsPath: string;
    name: string;
}

export interface ActiveEditor {
    uri: string;
    scheme: string;
    languageId: string;
    /** Zero-based line of the cursor. */
    line: number;
}

export interface StatusBarView {
    text: string;
    tooltip: string;
    command: string;
    /** Shown with the error or warning background. */
    severity?: 'error' | 'warning';
}

/** An item of a quick pick with a description (right of the label) and a detail line. */
export interface PickItem {
    label: string;
    description?: string;
    detail?: string;
}

export interface ProgressReport {
    message?: string;
    increment?: number;
}

export interface ProgressHandle {
    report(value: ProgressReport): void;
    /** Called once if the user presses Cancel on the notification. */
    onCancel(listener: () => void): void;
}

export interface Log {
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
}

export interface Host {
    readonly log: Log;

    // Settings.
    readSetting: SettingsReader;
    /** Calls `listener` with a test for "does this change affect section S". */
    onDidChangeConfiguration(listener: (affects: (section: string) => boolean) => void): Disposable;
    workspaceFolders(): WorkspaceFolder[];
    openSettings(query: string): Promise<void>;

    // Messages. Each resolves to the chosen action, or undefined when dismissed.
    showError(message: string, ...actions: string[]): Promise<string | undefined>;
    showWarning(message: string, ...actions: string[]): Promise<string | undefined>;
    showInfo(message: string, ...actions: string[]): Promise<string | undefined>;
    showQuickPick(items: string[], placeholder: string): Promise<string | undefined>;
    /** A quick pick of `items`; resolves to the index chosen, or undefined when dismissed. */
    pickItem(items: PickItem[], placeholder: string): Promise<number | undefined>;
    copyToClipboard(text: string): Promise<void>;
    showOutput(): void;

    // Editors and documents.
    activeEditor(): ActiveEditor | undefined;
    /** The text of an open document, else the file on disk, else undefined. */
    documentText(uri: string): Promise<string | undefined>;
    /** Opens the document (a URI string) with the cursor on zero-based `line`. */
    revealLine(uri: string, line: number): Promise<void>;
    /** Opens VS Code's diff view; `left` and `right` are URI strings. */
    showDiff(left: string, right: string, title: string): Promise<void>;
    /** Tells VS Code that a virtual document's content changed. */
    fireVirtualDocumentChanged(uri: string): void;

    // Window chrome.
    setStatusBar(view: StatusBarView): void;
    setContext(key: string, value: unknown): void;
    /** A cancellable notification that stays until `task` settles. */
    withProgress(title: string, cancellable: boolean, task: (progress: ProgressHandle) => Promise<void>): void;

    // Python extension (ms-python.python), optional.
    /** The active interpreter's command for `scopeUri`, or undefined without the extension. */
    pythonInterpreter(scopeUri?: string): Promise<string[] | undefined>;
    onDidChangePythonInterpreter(listener: () => void): Disposable;
}
