// The TLS flags of every command that calls the controller's gRPC NodeSync (kpx status, audit, executor):
// kube-apiserver's names. The files are read once; a group- or world-readable key is warned about by name.
import { readTlsFiles, tlsFilesFromFlags, type TlsFiles, type TlsMaterial } from '@kpx/transport';
import { UsageError } from './errors.js';
import type { Io } from './io.js';

export const clientTlsOptions = {
  'tls-cert-file': { type: 'string' },
  'tls-private-key-file': { type: 'string' },
  'ca-file': { type: 'string' },
} as const;

export const CLIENT_TLS_USAGE = `  --tls-cert-file FILE      mTLS to the controller: this client's certificate (an executor's: CN=system:node:<node>,
                            O=system:nodes; any other CN is an operator)
  --tls-private-key-file F  its private key (warned about when group or others may read it)
  --ca-file FILE            the CA that signed the controller's certificate
`;

type ClientTlsValues = {
  'tls-cert-file'?: string | undefined;
  'tls-private-key-file'?: string | undefined;
  'ca-file'?: string | undefined;
};

/** The client TLS files from the flags; undefined without any; UsageError when only some are given. */
export function clientTlsFiles(values: ClientTlsValues): TlsFiles | undefined {
  const files = tlsFilesFromFlags(values, values['ca-file'], '--ca-file');
  if (typeof files === 'string') throw new UsageError(files);
  return files;
}

/** The client TLS material from the flags (see clientTlsFiles), the key's permission warning on stderr. */
export function clientTls(values: ClientTlsValues, io: Io): TlsMaterial | undefined {
  const files = clientTlsFiles(values);
  return files
    ? readTlsFiles(files, { caFlag: '--ca-file', warn: (_fields, message) => io.stderr(`warning: ${message}\n`) })
    : undefined;
}
