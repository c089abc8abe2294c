/**
 * How a tool's exit status reads, decided once per tool (borgmatic's SUCCESS / WARNING / ERROR):
 * borg's 1 and restic's 3 mean "made, with warnings", getfattr's 1 "some had nothing". run()
 * throws for 'error' and says 'ok' or 'warning' in its result, so no caller re-reads exit codes.
 */
export type ExitClass = 'ok' | 'warning' | 'error';

/** `code` is the tool's exit code; -1 when it has none (killed, timed out, never started). */
export type ExitClassifier = (code: number) => ExitClass;

/** 0 and `ok` are ok, `warning` codes a warning, everything else (and no exit code) an error. */
export function exitClasses(spec: { readonly ok?: readonly number[]; readonly warning?: readonly number[] } = {}): ExitClassifier {
  return (code) => (code === 0 || spec.ok?.includes(code) ? 'ok' : spec.warning?.includes(code) ? 'warning' : 'error');
}

/** The default: only 0 is ok. */
export const zeroIsOk: ExitClassifier = exitClasses();

/** Any exit code is an answer (the caller reads the output: cpcmd, run-parts); no exit code is not. */
export const anyExitCode: ExitClassifier = (code) => (code >= 0 ? 'ok' : 'error');
