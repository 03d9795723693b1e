/**
 * Prints one plain closing line, `tests: N passed, N failed[, N skipped]`, after vitest's own
 * summary, so logs that read a run's outcome line by line (CI) see the counts.
 */
import type { Reporter } from 'vitest/reporters';
import type { RunnerTask, RunnerTestFile } from 'vitest';

function count(tasks: readonly RunnerTask[], tally: { passed: number; failed: number; skipped: number }): void {
  for (const task of tasks) {
    if (task.type === 'test') {
      const state = task.result?.state;
      if (state === 'pass') tally.passed++;
      else if (state === 'fail') tally.failed++;
      else tally.skipped++;
    } else if ('tasks' in task) {
      const failedBefore = tally.failed;
      count(task.tasks, tally);
      // A failing hook (beforeAll) fails the suite and leaves its tests unrun: count the suite.
      if (task.result?.state === 'fail' && tally.failed === failedBefore) tally.failed++;
    }
  }
}

export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = []): void {
    const tally = { passed: 0, failed: 0, skipped: 0 };
    count(files, tally);
    process.stdout.write(
      `\ntests: ${tally.passed} passed, ${tally.failed} failed${tally.skipped ? `, ${tally.skipped} skipped` : ''}\n`,
    );
  }
}
