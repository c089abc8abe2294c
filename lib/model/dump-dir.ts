/**
 * A dump run is written as `<dumps.dir>/<runId>.inprogress/` and renamed when complete: the
 * suffix and the glob that keeps such directories out of every backup (restic, borg, duplicity
 * excludes, the Bacula FileSet) are defined once, here.
 */
export const IN_PROGRESS = '.inprogress';
export const IN_PROGRESS_GLOB = `*${IN_PROGRESS}`;
