import type { Config } from './schema.js';

/**
 * `config print` and logs: values of keys that name secrets are replaced. Password *files* are
 * paths, not secrets, and stay visible (they are what an admin needs to check).
 */
export function redactConfig(config: Config): unknown {
  const walk = (value: unknown, key: string): unknown => {
    if (/(password|passphrase|secret|token)$/i.test(key) && typeof value === 'string') return '***';
    if (typeof value === 'string' && /^[a-z]+:\/\/[^/\s:@]+:[^/\s@]+@/i.test(value)) return value.replace(/:\/\/([^/\s:@]+):[^/\s@]+@/, '://$1:***@');
    if (Array.isArray(value)) return value.map((v) => walk(v, key));
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    return value;
  };
  return walk(config, '');
}
