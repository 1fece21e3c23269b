/** The results JSON of one run, typed workload by workload; the report reads nothing else. */
import type { Target } from './adapter.js';
import type { Environment } from './environment.js';
import type { Profile } from './profile.js';
import type { CleanupResult } from './workloads/cleanup.js';
import type { Workload } from './workloads/context.js';
import type { CopyResult } from './workloads/copy.js';
import type { HttpResult } from './workloads/http.js';
import type { FrameworkHttpResult } from './workloads/http-frameworks.js';
import type { LockFloodResult } from './workloads/lock-flood.js';
import type { LockFloodHttpResult } from './workloads/lock-flood-http.js';
import type { ContentionResult, GrowthResult, OpsResult } from './workloads/ops.js';
import type { OwnersResult } from './workloads/owners.js';

/** What each workload returns, by workload name. */
export interface WorkloadResults {
  create: OpsResult;
  'create-preloaded': OpsResult;
  'create-after-deletes': OpsResult;
  read: OpsResult;
  'read-missing': OpsResult;
  mixed: OpsResult;
  growth: GrowthResult;
  contention: ContentionResult;
  'lock-flood': LockFloodResult;
  'lock-flood-http': LockFloodHttpResult;
  cleanup: CleanupResult;
  http: HttpResult;
  'http-frameworks': FrameworkHttpResult;
  copy: CopyResult;
  owners: OwnersResult;
}

export type WorkloadName = keyof WorkloadResults;

/** The throughput workloads, which all report an `OpsResult`. */
export type OpsWorkloadName = {
  [W in WorkloadName]: WorkloadResults[W] extends OpsResult ? W : never;
}[WorkloadName];

/** Every workload, each typed with its own name and result. */
export type WorkloadRegistry = { [W in WorkloadName]: Workload<WorkloadResults[W], W> };

/** [min, max] over the repeats of each numeric field, by field name. */
export type Spread = Record<string, [number, number]>;

/** Why a workload has no figures for a target. */
export interface NotMeasured {
  status: 'unavailable' | 'timed out' | 'failed' | 'skipped';
  reason: string;
}

export type Outcome<R> =
  | {
      status: 'ok';
      /** Field-wise median over the repeats (nested series from the median run). */
      result: R;
      spread: Spread;
      runs: R[];
    }
  | NotMeasured;

/** results[workload][target] */
export type ResultsByWorkload = {
  [W in WorkloadName]?: Record<string, Outcome<WorkloadResults[W]>>;
};

export interface TargetInfo {
  name: string;
  kind: Target['kind'];
  description: string;
  durability: string;
  engine?: string;
  peers?: string[];
  /** Set on `<store>-express`: the sessile target it drives through `toExpressStore`. */
  viaExpressOf?: string;
  cleanup?: string;
  status: 'ok' | 'unavailable';
  reason?: string;
}

export interface BenchResults {
  schema: 1;
  profile: Profile;
  repeat: number;
  environment: Environment;
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  targets: TargetInfo[];
  workloads: {
    name: WorkloadName;
    title: string;
    description: string;
    primary: { field: string; label: string; higherIsBetter: boolean };
  }[];
  results: ResultsByWorkload;
}
