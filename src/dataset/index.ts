/**
 * The dataset layer (OpenZFS DSL): a tree of datasets in one pool, each with its own object set, plus
 * snapshots and clones. Theory, in short (docs/datasets-design.md has the whole design):
 *
 * - Every block carries its birth txg. A dataset remembers the txg of its newest snapshot
 *   (prevSnapshotTxg); when its object set frees a block, a block born after that txg is referenced by
 *   no snapshot and goes back to the pool, and an older one is still the snapshot's and is appended to
 *   the dataset's dead list instead. Nothing walks a tree, so a snapshot is O(1): it keeps the head's
 *   root pointer and takes its dead list; the head starts an empty one.
 * - Destroying snapshot S (previous P, next N): N's dead-list entries born after P were referenced by S
 *   alone and are freed; S's dead list joins N's. A clone is a head whose object set starts at S's root
 *   and whose prevSnapshotTxg is S's txg, so it never frees S's blocks. Rollback frees what the head wrote
 *   since S by a walk pruned at S's txg (copy-on-write: a parent is never older than its children).
 * - Structural changes are sync tasks (pool.syncTask): they run inside one txg's sync, after the
 *   datasets are written and before the MOS passes, so a crash leaves them wholly done or not at all.
 * - Records: each dataset is a MOS object whose bonus is DatasetPhys v2 (dsl.ts); v1 records (the root
 *   dataset of older pools) read as "no snapshots". Dead lists are plain MOS objects (deadlist.ts).
 */
export { DatasetManager, decodeDatasetPhysAny, encodeDatasetPhysV2 } from './dsl.js';
export type {
  BlockVolume, CreateDatasetOptions, DatasetHost, DatasetListEntry, DatasetPhys, DatasetSpace, DestroyOptions, DestroyResult, SnapshotHold,
} from './dsl.js';
export { diffFilesystems, escapeDiffPath, formatDiffEntry } from './diff.js';
export type { DiffEntry } from './diff.js';
export { Volume } from './volume.js';
export { appendDeadList, createDeadList, deadListBytesBornAfter, deadListChunks, deadListTotals, freeDeadList } from './deadlist.js';
export type { DeadListTotals } from './deadlist.js';
export * from './names.js';
export * from './properties.js';
