#!/usr/bin/env node
// Runs the daemon from its TypeScript source through tsx, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
const { daemonMain } = await import('../src/api/daemon-main.ts');
await daemonMain();
