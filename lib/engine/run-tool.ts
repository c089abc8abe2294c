import { CommandError, EngineError } from '../errors.js';
import type { Command } from '../proc/command.js';
import { run, type RunResult, type RunOptions } from '../proc/run.js';
import type { EngineName } from './types.js';

/** borg's report after a traceback (versions, pid, argv): the error is the line before it. */
const DEBUG_TRAILER = /^(Platform: |Linux: |Borg: \d|Borg server: |PID: \d|sys\.argv: |SSH_ORIGINAL_COMMAND: )/;

/**
 * Run an engine's own tool; a failure becomes an EngineError that says what its exit code means
 * (duplicity 23, restic 11, borg 2…) and quotes the tool's last stderr lines.
 */
export async function runEngineTool(
  engine: EngineName,
  action: string,
  command: Command,
  explain: (code: number | undefined, stderr: string) => string,
  options: Pick<RunOptions, 'signal' | 'secrets' | 'exitClass' | 'onStdout'> = {},
): Promise<RunResult> {
  try {
    return await run(command, options);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const code = err.exitCodeOfCommand;
    const detail = err.stderrTail.split('\n').map((l) => l.trim()).filter((l) => l && !DEBUG_TRAILER.test(l)).slice(-2).join(' / ');
    throw new EngineError(`${engine} ${action} failed (exit ${code ?? '-'}: ${explain(code, err.stderrTail)})${detail ? `: ${detail}` : ''}`, engine, {
      exitCode: code,
      command: err.command,
    });
  }
}
