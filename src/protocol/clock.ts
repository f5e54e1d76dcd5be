/**
 * The wall clock a part judges validity by (ticket and challenge expiry, the proof replay cache, a
 * cached password check), made never to run backwards: a wall clock stepped back (NTP, an operator,
 * a VM resumed) would otherwise make a ticket, a challenge or a cached credential that had expired
 * valid again for the step's length, since every part reads the same wall clock and no skew shows.
 *
 * Each reading is the wall clock, or, when that is behind, the last reading carried forward by the
 * monotonic time since (so expiry still comes on time, in real seconds). Anchored when made: a step
 * back after that is caught even by a part that was idle across it. A step forward is followed
 * (nobody can tell which reading is right; following it only ends validity early). Within one
 * process only. The lab's parts judge tickets and challenges on the lab clock (`LabClock`,
 * lab-clock.ts), which reads no wall clock once started; they still read it through this, which
 * changes nothing for it and keeps "never backwards" for any other clock a caller injects.
 *
 * A reading that is not a finite number is passed through untouched, for the callers to refuse.
 */
export function forwardOnlyClock(
  wall: () => number = Date.now,
  // Looked up at each call (not bound once) so that tests can fake it.
  monotonic: () => number = () => performance.now(),
): () => number {
  let last = wall();
  let lastMonotonic = monotonic();
  if (!Number.isFinite(last)) last = Number.NEGATIVE_INFINITY;
  return () => {
    const w = wall();
    if (!Number.isFinite(w)) return w;
    const m = monotonic();
    const carried = last + Math.max(0, m - lastMonotonic);
    last = w >= carried ? w : carried;
    lastMonotonic = m;
    return last;
  };
}
