import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { groupsFromClaim } from '../identity/identify.js';
import type { QuotaEngine } from '../quota/engine.js';
import { MAX_AGO, REPORT_PERIODS, type ReportPeriod } from '../reports/periods.js';
import type { UsageReports } from '../reports/usage-reports.js';
import { userReport } from '../reports/user-report.js';
import { admitAdmin, send, sendError, soleParam } from './respond.js';

export interface ReportDeps {
  readonly config: () => ConfigSnapshot;
  readonly engine: QuotaEngine;
  readonly reports: UsageReports;
}

const MAX_LIST = 1000;

/** Bad query parameters: the message says which and what is accepted. */
class QueryError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/**
 * The admin's reports under /v1/reports/: top (users by tokens in an hour, day or month), totals
 * (per model and the top users), daily (the last days' totals) and user (one user's windows, limits
 * with provenance, and 429s). Answers false when the path is not one of them.
 */
export async function routeReports(req: IncomingMessage, res: ServerResponse, deps: ReportDeps, url: URL): Promise<boolean> {
  const report = /^\/v1\/reports\/(top|totals|daily|user)$/.exec(url.pathname)?.[1];
  if (report === undefined) return false;
  req.resume();
  if (req.method !== 'GET') {
    res.setHeader('allow', 'GET');
    sendError(res, 405, 'Use GET.');
    return true;
  }
  if (!admitAdmin(req, res, deps)) return true;
  const query = url.searchParams;
  const config = deps.config();
  try {
    const model = modelParam(query, config);
    if (report === 'top' || report === 'totals') {
      const period = periodParam(query);
      const options = { limit: intParam(query, 'limit', 1, MAX_LIST, 10), ago: intParam(query, 'ago', 0, MAX_AGO[period], 0) };
      if (report === 'top') send(res, 200, await deps.reports.topUsers(period, { ...options, ...(model === undefined ? {} : { model }) }));
      else if (model !== undefined) throw new QueryError("totals cover every model: leave out 'model' (top and daily take one)");
      else send(res, 200, await deps.reports.totals(period, options));
    } else if (report === 'daily') {
      send(res, 200, await deps.reports.daily({ days: intParam(query, 'days', 1, 31, 31), ...(model === undefined ? {} : { model }) }));
    } else {
      const user = soleParam(query, 'user');
      if (user === undefined) throw new QueryError('Name one user: ?user=alice');
      send(res, 200, await userReport({ engine: deps.engine, reports: deps.reports, config }, user, { ...(query.has('groups') ? { groups: groupsParam(query) } : {}), ...(model === undefined ? {} : { model }) }));
    }
  } catch (err) {
    if (!(err instanceof QueryError)) throw err;
    sendError(res, err.status, err.message);
  }
  return true;
}

function periodParam(query: URLSearchParams): ReportPeriod {
  const period = query.get('period') ?? 'day';
  if (!(REPORT_PERIODS as readonly string[]).includes(period)) throw new QueryError(`period must be one of ${REPORT_PERIODS.join(', ')}`);
  return period as ReportPeriod;
}

function intParam(query: URLSearchParams, name: string, min: number, max: number, fallback: number): number {
  const text = query.get(name);
  if (text === null) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) throw new QueryError(`${name} must be a whole number from ${min} to ${max}`);
  return Number(text);
}

function modelParam(query: URLSearchParams, config: ConfigSnapshot): string | undefined {
  const model = query.get('model');
  if (model === null) return undefined;
  if (!config.hasModel(model)) throw new QueryError(`The model '${model}' is not configured.`, 404);
  return model;
}

/** One `groups=` per group, read exactly as the engine reads a JWT's groups claim. */
function groupsParam(query: URLSearchParams): string[] {
  return groupsFromClaim(query.getAll('groups'));
}
