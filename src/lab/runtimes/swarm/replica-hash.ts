/**
 * The one hash that stands for a service's replicas: theirs when they agree; when they differ,
 * the odd one's (the hash the fewest tasks have; on a tie the first, i.e. the newest task's, as
 * the caller lists them newest first). A tampered replica then makes the whole service untrusted
 * rather than hiding among its siblings; none of them is taken for the registered code.
 */
export function replicaHash(newestFirst: readonly string[]): string {
  if (newestFirst.length === 0) throw new Error('no replica was measured');
  const counts = new Map<string, number>();
  for (const h of newestFirst) counts.set(h, (counts.get(h) ?? 0) + 1);
  const fewest = Math.min(...counts.values());
  return newestFirst.find((h) => counts.get(h) === fewest) as string;
}
