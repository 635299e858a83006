import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { callerOf } from '../identity/caller.js';

/** Whether the caller holds the admin token; if not, the 401 or 403 has been sent. */
export function admitAdmin(req: IncomingMessage, res: ServerResponse, deps: { readonly config: () => ConfigSnapshot }): boolean {
  const config = deps.config();
  if (config.settings.admin.tokenSha256 === undefined) {
    sendError(res, 403, 'This endpoint is disabled: no admin token is configured (admin.tokenSha256).');
    return false;
  }
  const caller = callerOf(req.headers.authorization, config);
  if (caller.kind === 'admin') return true;
  if (caller.kind === 'user') sendError(res, 403, 'This endpoint needs the admin token; an API key is not enough.');
  else sendError(res, 401, 'A valid admin token is required (Authorization: Bearer).');
  return false;
}

/** The body as text, or undefined if it is over `limit` bytes (the excess is read and dropped, not kept). */
export function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function sendError(res: ServerResponse, status: number, message: string): void {
  send(res, status, { error: { message, type: 'invalid_request_error', param: null, code: null } });
}

export function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A query parameter given exactly once and not empty; undefined when missing, empty or repeated (ambiguous). */
export function soleParam(query: URLSearchParams, name: string): string | undefined {
  const values = query.getAll(name);
  return values.length === 1 && values[0] !== '' ? values[0] : undefined;
}
