import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError } from '../../openai/request.js';
import { groupsFromClaim, MAX_USER_LENGTH } from '../../identity/identify.js';
import { userReport } from '../../reports/user-report.js';
import { TokenizerUnavailableError } from '../../tokens/errors.js';
import { readBody, send, sendError } from '../respond.js';
import { decisionCounts } from './decision-counts.js';
import type { UiDeps } from './deps.js';
import { countPrompt } from './prompt-count.js';
import { userView } from './user-view.js';

export const TOP_USERS = 20;
export const RECENT_DENIALS = 50;

const METHODS: Readonly<Record<string, 'GET' | 'POST'>> = { decisions: 'GET', top: 'GET', user: 'GET', denials: 'GET', models: 'GET', count: 'POST' };

/** The method /ui/api/{name} takes, or undefined when there is no such endpoint. */
export function apiMethod(name: string): 'GET' | 'POST' | undefined {
  return Object.hasOwn(METHODS, name) ? METHODS[name] : undefined;
}

/** The page's data, as JSON. The caller has checked the method, the session and the UI header. */
export async function serveApi(name: string, req: IncomingMessage, res: ServerResponse, deps: UiDeps, url: URL): Promise<void> {
  const config = deps.config();
  switch (name) {
    case 'decisions':
      return send(res, 200, await decisionCounts(deps.metrics, Date.now()));
    case 'top':
      return send(res, 200, await deps.reports.topUsers('day', { limit: TOP_USERS, ago: 0 }));
    case 'denials':
      return send(res, 200, { denials: deps.reports.recentDenials(RECENT_DENIALS) });
    case 'models':
      return send(res, 200, { models: config.modelNames, defaultModel: config.settings.defaultModel ?? null });
    case 'user': {
      const user = url.searchParams.get('user');
      if (user === null || user === '' || user.length > MAX_USER_LENGTH || !user.isWellFormed()) {
        return sendError(res, 400, `Name one user of at most ${MAX_USER_LENGTH} characters: ?user=NAME.`);
      }
      // The groups the user's JWT would carry (the page cannot see their tokens), read as the engine reads the claim.
      const groups = url.searchParams.has('groups') ? { groups: groupsFromClaim(url.searchParams.getAll('groups')) } : {};
      return send(res, 200, userView(await userReport({ engine: deps.engine, reports: deps.reports, config }, user, groups)));
    }
    case 'count':
      return count(req, res, deps);
  }
}

/** POST /ui/api/count {model, text}: exact prompt tokens next to the characters/4 guess. */
async function count(req: IncomingMessage, res: ServerResponse, deps: UiDeps): Promise<void> {
  const config = deps.config();
  const limit = config.settings.maxBodyBytes;
  const body = await readBody(req, limit);
  if (body === undefined) return sendError(res, 413, `The request body is larger than ${limit} bytes.`);
  let fields: unknown;
  try {
    fields = JSON.parse(body);
  } catch {
    return sendError(res, 400, 'The request body is not valid JSON.');
  }
  const { model, text } = (typeof fields === 'object' && fields !== null ? fields : {}) as { model?: unknown; text?: unknown };
  if (typeof model !== 'string' || typeof text !== 'string') return sendError(res, 400, "Send {\"model\": \"...\", \"text\": \"...\"}.");
  if (!config.hasModel(model)) return sendError(res, 404, `The model '${model}' is not configured.`);
  try {
    return send(res, 200, await countPrompt(deps.tokenizers, model, text));
  } catch (err) {
    if (err instanceof BadRequestError) return sendError(res, 400, err.message);
    if (err instanceof TokenizerUnavailableError) return sendError(res, 503, err.message);
    deps.logger.warn({ err: (err as Error).message }, 'prompt could not be counted');
    return sendError(res, 400, 'The text could not be counted for this model.');
  }
}
