import { remoteEngineSuite } from '../harness/offsite-remote-suite.js';

// restic to an append-only backup host in network namespaces: backup, list, status, restore db and
// site through it; tampering refused; secrets never on argv or in logs (issue 30 items 1 and 4).
remoteEngineSuite('restic');
