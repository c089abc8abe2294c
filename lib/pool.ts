/**
 * `work` for every item in order, at most `size` of them holding a slot at once. A task hands its
 * slot back through `release` as soon as the part that needs it is done (the dump itself: server
 * connections and CPU), so its tail (verification, rename) overlaps the next task instead of
 * leaving a core idle; the slot is released at the latest when the task ends. Resolves when
 * every task has finished.
 */
export async function pool<T>(items: readonly T[], size: number, work: (item: T, release: () => void) => Promise<void>): Promise<void> {
  let free = Math.max(1, size);
  const waiting: (() => void)[] = [];
  const tasks: Promise<void>[] = [];
  for (const item of items) {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      const next = waiting.shift();
      if (next) next();
      else free++;
    };
    const task = work(item, release).finally(release);
    task.catch(() => undefined); // handled by Promise.all below, not an unhandled rejection meanwhile
    tasks.push(task);
  }
  await Promise.all(tasks);
}
