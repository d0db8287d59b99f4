// A record processor written with the npm package aws-kcl (tests/servers pins 2.3.2), the way its
// README shows: every record appended to $KN_ML_OUT, a checkpoint after each batch at its last
// sequence number, SHARD_END at shardEnded, a checkpoint at shutdownRequested.
'use strict';
const fs = require('fs');
const kcl = require('aws-kcl');

const out = process.env.KN_ML_OUT;
let shard = '?';

function note(line) {
  fs.appendFileSync(out, line + '\n');
}

const processor = {
  initialize(input, done) {
    shard = input.shardId;
    note(`INIT ${shard} ${input.sequenceNumber} ${process.pid}`);
    done();
  },
  processRecords(input, done) {
    const recs = input.records || [];
    for (const r of recs) {
      const data = Buffer.from(r.data, 'base64').toString();
      note(`REC ${shard} ${r.sequenceNumber} ${r.subSequenceNumber} ${r.partitionKey} ${data}`);
    }
    if (!recs.length) {
      done();
      return;
    }
    const last = recs[recs.length - 1].sequenceNumber;
    input.checkpointer.checkpoint(last, (err) => {
      note(`CK ${shard} ${last} ${err || 'ok'}`);
      done();
    });
  },
  leaseLost(input, done) {
    note(`LOST ${shard}`);
    done();
  },
  shardEnded(input, done) {
    input.checkpointer.checkpoint((err) => {
      note(`ENDED ${shard} ${err || 'ok'}`);
      done();
    });
  },
  shutdownRequested(input, done) {
    input.checkpointer.checkpoint((err) => {
      note(`SHUTDOWN ${shard} ${err || 'ok'}`);
      done();
    });
  },
};

kcl(processor).run();
