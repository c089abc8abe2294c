import { baculaEngine } from './bacula.js';
import { borgEngine } from './borg.js';
import { duplicityEngine } from './duplicity.js';
import { noneEngine } from './none.js';
import { resticEngine } from './restic.js';
import type { Engine, EngineName } from './types.js';

/** One table: the config's `engine` key picks the implementation. */
const ENGINES: Readonly<Record<EngineName, Engine>> = {
  none: noneEngine,
  bacula: baculaEngine,
  duplicity: duplicityEngine,
  restic: resticEngine,
  borg: borgEngine,
};

export function getEngine(name: EngineName): Engine {
  const engine = ENGINES[name];
  if (!engine) throw new Error(`unknown engine ${String(name)}`);
  return engine;
}
