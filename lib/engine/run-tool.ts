import { CommandError, EngineError, tail } from '../errors.js';
import { redact, type Command } from '../proc/command.js';
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
  options: Pick<RunOptions, 'signal' | 'secrets' | 'exitClass' | 'onStdout' | 'onStderr'> & {
    /** The tool's stderr as plain text, when what it wrote is not (borg --log-json: ./borg-log.ts); read instead of the captured tail. */
    stderrText?: () => string;
  } = {},
): Promise<RunResult> {
  const { stderrText, ...runOptions } = options;
  try {
    return await run(command, runOptions);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const code = err.exitCodeOfCommand;
    const stderrTail = stderrText ? redact(tail(stderrText()), options.secrets) : err.stderrTail;
    const detail = stderrTail.split('\n').map((l) => l.trim()).filter((l) => l && !DEBUG_TRAILER.test(l)).slice(-2).join(' / ');
    throw new EngineError(`${engine} ${action} failed (exit ${code ?? '-'}: ${explain(code, stderrTail)})${detail ? `: ${detail}` : ''}`, engine, {
      exitCode: code,
      command: err.command,
    });
  }
}
