// A record processor in the older aws-kcl style (the one the package's own basic sample uses):
// initialize, processRecords and a single shutdown(input) with input.reason TERMINATE (the shard
// ended: checkpoint) or ZOMBIE (the lease is gone), plus shutdownRequested. The package maps our
// shardEnded and leaseLost onto it. Records and events go to $KN_ML_OUT as node_processor.js writes them.
'use strict';
const fs = require('fs');
const kcl = require('aws-kcl');

const out = process.env.KN_ML_OUT;
let shard = '?';

function note(line) {
  fs.appendFileSync(out, line + '\n');
}

function processor() {
  return {
    initialize(input, done) {
      shard = input.shardId;
      note(`INIT ${shard} ${input.sequenceNumber} ${process.pid}`);
      done();
    },
    processRecords(input, done) {
      const recs = input.records || [];
      let last = null;
      for (const r of recs) {
        note(`REC ${shard} ${r.sequenceNumber} ${r.subSequenceNumber} ${r.partitionKey} ` +
             Buffer.from(r.data, 'base64').toString());
        last = r.sequenceNumber;
      }
      if (!last) {
        done();
        return;
      }
      input.checkpointer.checkpoint(last, (err) => {
        note(`CK ${shard} ${last} ${err || 'ok'}`);
        done();
      });
    },
    shutdownRequested(input, done) {
      input.checkpointer.checkpoint((err) => {
        note(`SHUTDOWN ${shard} ${err || 'ok'}`);
        done();
      });
    },
    shutdown(input, done) {
      if (input.reason !== 'TERMINATE') {
        note(`LOST ${shard}`);
        done();
        return;
      }
      input.checkpointer.checkpoint((err) => {
        note(`ENDED ${shard} ${err || 'ok'}`);
        done();
      });
    },
  };
}

kcl(processor()).run();
