import { rotationLength } from '../model/verify-rotation.js';
import type { VerifyState } from '../model/verify-state.js';

export interface VerifyStatusInput {
  readonly state: VerifyState | undefined;
  readonly schedule: 'off' | 'nightly' | 'weekly';
  readonly sample: number;
  /** Databases of the last dump run (kind:name), to know what the rotation must cover. */
  readonly databases: readonly { readonly kind: string; readonly database: string }[];
}

export interface VerifyVerdict {
  readonly critical: string[];
  readonly warning: string[];
  readonly details: string[];
  readonly json: Record<string, unknown>;
}

const DAY = 86_400_000;
/** cron.daily drifts (anacron's random delay, a long backup): a day of slack before "overdue". */
const SLACK_MS = 2 * DAY;

/**
 * The verification part of `status`: a dump that failed its last verification is CRITICAL (the
 * backup of that database is not known to be good) until it passes again; one the rotation should
 * have reached by now is a WARNING. Dumps a nightly verification could not check are warnings of
 * that night's run (code verify-not-checked, in status.json), not repeated here.
 */
export function verifyVerdict(input: VerifyStatusInput, now: Date): VerifyVerdict {
  const critical: string[] = [];
  const warning: string[] = [];
  const details: string[] = [];
  const dbs = Object.values(input.state?.databases ?? {});
  const current = new Set(input.databases.map((d) => `${d.kind}:${d.database}`));
  // Databases dropped since are no longer anyone's problem; server-wide exports always count.
  const relevant = dbs.filter((d) => current.size === 0 || current.has(`${d.kind}:${d.database}`) || d.database.startsWith('('));
  const failed = relevant.filter((d) => d.outcome === 'failed');
  const name = (d: (typeof dbs)[number]): string => `${d.kind} '${d.database}'`;
  if (failed.length) critical.push(`verify failed for ${failed.map(name).slice(0, 3).join(', ')}${failed.length > 3 ? ` and ${failed.length - 3} more` : ''}: ${failed[0]!.problems[0] ?? 'failed'} (run ${failed[0]!.runId})`);

  const rotation = rotationLength(input.databases.length, input.sample);
  const period = input.schedule === 'weekly' ? 7 * DAY : DAY;
  let overdue: string[] = [];
  if (input.schedule !== 'off' && input.state?.lastRun && Number.isFinite(rotation)) {
    const limit = rotation * period + SLACK_MS;
    const firstSeen = Math.min(...dbs.map((d) => Date.parse(d.lastAttemptAt)), Date.parse(input.state.lastRun.at));
    overdue = input.databases
      .filter((d) => {
        const v = input.state!.databases[`${d.kind}:${d.database}`]?.lastVerifiedAt;
        return now.getTime() - (v ? Date.parse(v) : firstSeen) > limit;
      })
      .map((d) => `${d.kind} '${d.database}'`);
    if (overdue.length) warning.push(`${overdue.length} database(s) not verified for more than ${Math.round(limit / DAY)} days: ${overdue.slice(0, 3).join(', ')}${overdue.length > 3 ? ', …' : ''}`);
  }
  const verified = input.databases.filter((d) => input.state?.databases[`${d.kind}:${d.database}`]?.lastVerifiedAt).length;
  if (input.schedule !== 'off' || input.state) {
    const last = input.state?.lastRun;
    details.push(
      `verify: ${input.schedule}, ${input.sample} per verification, every database within ${Number.isFinite(rotation) ? rotation : '∞'} ${input.schedule === 'weekly' ? 'week' : 'night'}${rotation === 1 ? '' : 's'}; ` +
        `${verified} of ${input.databases.length} verified${last ? `; last ${last.at} (run ${last.runId}: ${last.checked} checked, ${last.failed} failed)` : '; none yet'}`,
    );
  }
  // Per database the last time it passed: the three the rotation reaches next (all in --json).
  const oldest = input.databases
    .map((d) => ({ d, at: input.state?.databases[`${d.kind}:${d.database}`]?.lastVerifiedAt }))
    .sort((a, b) => (a.at === undefined ? -1 : b.at === undefined ? 1 : Date.parse(a.at) - Date.parse(b.at)))
    .slice(0, 3);
  if (oldest.length && (input.schedule !== 'off' || input.state)) {
    details.push(`verify: least recently verified: ${oldest.map(({ d, at }) => `${d.kind} '${d.database}' ${at ?? 'never'}`).join(', ')}`);
  }
  return {
    critical,
    warning,
    details,
    json: {
      schedule: input.schedule,
      sample: input.sample,
      rotationLength: Number.isFinite(rotation) ? rotation : null,
      lastRun: input.state?.lastRun ?? null,
      failed: failed.map((d) => ({ kind: d.kind, database: d.database, runId: d.runId, problems: d.problems })),
      overdue,
      databases: input.state?.databases ?? {},
    },
  };
}
