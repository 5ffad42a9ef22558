// A kubeconfig for the test API server. client-node 1.4 accepts a plain-http server only together with
// insecure-skip-tls-verify: true (KubeConfig.createAgent throws "HTTP protocol is not allowed when
// skipTLSVerify is not set or false" otherwise), so that is what we write; no certificates are needed.

export interface KubeconfigOptions {
  server: string;
  token: string;
  name?: string;
}

export function renderKubeconfig(options: KubeconfigOptions): string {
  const name = options.name ?? 'kpx-test';
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${options.server}`,
    '    insecure-skip-tls-verify: true',
    'users:',
    `- name: ${name}`,
    '  user:',
    `    token: ${options.token}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `current-context: ${name}`,
    '',
  ].join('\n');
}
