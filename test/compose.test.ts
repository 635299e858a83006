import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';

/*
 * compose.yaml cannot run here (no Docker engine); what can be checked is checked: it parses, the
 * service names and ports are the addresses envoy/envoy.yaml's clusters use, the mounted files exist
 * and land where envoy.yaml and tokenwarden's command look for them, and vLLM's settings match the limits.
 */
const compose = parse(readFileSync('compose.yaml', 'utf8'));
const envoy = parse(readFileSync('envoy/envoy.yaml', 'utf8'));
const services = compose.services as Record<string, any>;

const mounts = (service: string) =>
  new Map((services[service].volumes as string[]).filter((v) => v.startsWith('./')).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));

describe('compose.yaml', () => {
  it("names every Envoy cluster's address as a service, with the port that service listens on", () => {
    const exposed = readFileSync('Dockerfile', 'utf8').match(/^EXPOSE (.+)$/m)![1]!.split(' ').map(Number);
    for (const cluster of envoy.static_resources.clusters) {
      const { address, port_value } = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
      expect(Object.keys(services)).toContain(address);
      if (address === 'tokenwarden') expect(exposed).toContain(port_value);
      if (address.startsWith('vllm')) expect(port_value).toBe(8000); // vllm serve's default port
    }
  });

  it('mounts envoy.yaml and usage.lua unchanged where Envoy reads them, and publishes the listener', () => {
    const envoyMounts = mounts('envoy');
    const config = services['envoy'].command[services['envoy'].command.indexOf('-c') + 1];
    expect(envoyMounts.get(config)).toBe('./envoy/envoy.yaml');
    const lua = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters.find(
      (f: { name: string }) => f.name === 'envoy.filters.http.lua',
    ).typed_config.default_source_code.filename;
    expect(envoyMounts.get(lua)).toBe('./envoy/usage.lua');
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    expect(services['envoy'].ports).toContain(`${listener}:${listener}`);
    for (const source of envoyMounts.values()) expect(existsSync(source)).toBe(true);
  });

  it("gives tokenwarden the mounted limits and the Redis service, and vLLM a model and context the limits know", () => {
    const command: string[] = services['tokenwarden'].command;
    const limitsPath = command[command.indexOf('--config') + 1]!;
    const source = mounts('tokenwarden').get(limitsPath)!;
    expect(existsSync(source)).toBe(true);
    expect(services['tokenwarden'].build).toBe('.');
    expect(command[command.indexOf('--redis-url') + 1]).toBe('redis://redis:6379');
    const limits = parseLimitsYaml(readFileSync(source, 'utf8'), source);
    const vllm: string[] = services['vllm-llama-3-2-1b'].command;
    const flag = (name: string) => vllm.find((a) => a.startsWith(`--${name}=`))!.split('=')[1]!;
    const model = flag('served-model-name');
    expect(limits.hasModel(model)).toBe(true);
    expect(Number(flag('max-model-len'))).toBe(limits.settings.models[model]!.maxModelLen);
    expect(vllm).toContain('--enable-force-include-usage');
  });
});
