/**
 * asmopt for VS Code: starts `asmopt serve` (a Python language server) and adds what LSP
 * alone cannot: a diff view before a candidate is applied, progress with Cancel, a status
 * bar item, and clear messages when Python or asmopt is missing.
 */

import type * as vscode from 'vscode';

import { CANDIDATE_SCHEME, CandidateViews } from './candidates';
import { cancelProgress, clientFactory, CurrentClient } from './client';
import { CommandRouter } from './commands';
import { HottestFunctions } from './hottest';
import { ProgressNotifications } from './progress';
import { Commands } from './protocol';
import { runProcess } from './pythonCheck';
import { ServerController } from './serverController';
import { createHost, createHostParts, registerCommand, registerVirtualDocuments, subscribe } from './vscodeapi';

let controller: ServerController | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const parts = createHostParts(context);
    const host = createHost(parts);
    const current = new CurrentClient();
    const views = new CandidateViews(host, current);
    const router = new CommandRouter(host, current, views);
    const hottest = new HottestFunctions(host, current);

    controller = new ServerController(
        host,
        clientFactory({
            output: parts.output,
            router,
            current,
            progress: (client) => new ProgressNotifications(host, (token) => cancelProgress(client, token)),
        }),
        runProcess,
    );
    const server = controller;

    registerVirtualDocuments(context, CANDIDATE_SCHEME, parts.virtualDocumentChanged, (query) => views.content(query));

    // A failing command says what went wrong instead of failing silently.
    const guarded =
        (name: string, handler: (...args: unknown[]) => Promise<unknown>) =>
        async (...args: unknown[]) => {
            try {
                return await handler(...args);
            } catch (err) {
                const message = (err as Error)?.message ?? String(err);
                host.log.error(`${name}: ${message}`);
                void host.showError(`asmopt: ${name} failed: ${message}`, 'Show output').then((a) => a && host.showOutput());
                return undefined;
            }
        };
    registerCommand(context, Commands.showCandidateDiff, guarded('Show candidate diff', (...args) => router.showCandidateDiff(args)));
    registerCommand(context, Commands.restartServer, guarded('Restart server', () => server.restart()));
    registerCommand(context, Commands.showOutput, async () => host.showOutput());
    registerCommand(context, Commands.showHottestFunctions, guarded('Show hottest functions', (...args) => hottest.show(args)));
    // asmopt.optimizeFunction, optimizeFile and applyCandidate are registered by the language
    // client once the server announces them; CommandRouter fills in their arguments.

    subscribe(context, host.onDidChangeConfiguration((affects) => void server.onConfigurationChanged(affects)));
    subscribe(context, host.onDidChangePythonInterpreter(() => void server.onPythonInterpreterChanged()));
    context.subscriptions.push({ dispose: () => void server.stop() });

    await server.start();
}

export async function deactivate(): Promise<void> {
    await controller?.stop();
    controller = undefined;
}
