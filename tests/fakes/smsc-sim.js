// SMSC simulator on npm "smpp" 0.5.1 (node-smpp), for tests/test_links.py: the recipe of
// shared/reference/test-peers.md section 2.1, with controls over HTTP (127.0.0.1 only):
//   GET /mo?from=&to=&text=      an MO deliver_sm to every bound session that receives
//                                (or hex=&esm=&dc=&sar=&payload=: moFields below; count=N:
//                                N of them at once)
//   GET /submits                 every submit_sm seen (JSON): `text` as node-smpp decodes it
//                                by data_coding (its decoder for 1 is GSM 03.38's), `hex` its
//                                short_message as sent (header included), `source_ton` and
//                                `source_npi` its source address's, `at` when (Date.now)
//   GET /binds                   binds and unbinds: {ok, refused, unbinds, broken, bound,
//                                kinds, unbound, delivers}: `kinds` the kinds of the sessions
//                                bound now (sorted), `unbound` of those that sent unbind (in
//                                order), `delivers` the deliver_sm sent to each kind,
//                                `broken` the sessions closed on a PDU it could not read,
//                                `mo_answers` the MO's deliver_sm_resp: {ok, refused},
//                                `system_types` each accepted bind's system_type, `enquires`
//                                the enquire_link the ESMEs sent, `enquire_answers`
//                                the enquire_link_resp to /enquire's
//   GET /throttle?n=N[&status=S] the next N submit_sm answer ESME_RTHROTTLED (or
//                                command_status S: ESME_RMSGQFUL is 0x14)
//   GET /enquire                 an enquire_link to every bound session; their answers are
//                                counted in /binds' `enquire_answers`
//   GET /nack?n=N[&status=S]     the next N submit_sm get a generic_nack (ESME_RINVCMDLEN,
//                                or command_status S)
//   GET /ids?list=A,B            the next submit_sm_resp give these message_ids, in order
//   GET /receipts?on=1|0         send receipts by themselves (on at start) or not
//   GET /receipt?id=&stat=&err=  a receipt deliver_sm (esm_class 0x04) to every receiving
//                                session: its text `id:ID ... stat:STAT err:ERR text:` (no
//                                stat: without stat=), receipted_message_id ID unless tlv=0,
//                                message_state S with state=S
//   GET /hold?on=1|0             hold submit_sm answers (never sent while on)
//   GET /release                 answer the held submit_sm still on an open session, hold off
//   GET /count                   how many submit_sm were seen: {submits}
//   GET /drop[?kind=K]           destroy every session's socket (a lost connection), or
//                                only those of kind K (transceiver, transmitter, receiver)
// Env: SMSC_PORT, CONTROL_PORT, SMSC_USER/SMSC_PASS (bind checks them), DLR_DELAY_MS.
// A destination ending 0000 is undeliverable (receipt stat:UNDELIV err:001).
// As a real SMSC, it sends deliver_sm (receipts, MO) only to sessions bound transceiver or
// receiver, never to a transmitter: a receipt goes to the session that submitted its message
// when that one receives and is still bound, else to a receiving session of the same
// system_id. A receipt with no such session, or whose session ends before its
// deliver_sm_resp, waits for the next receiving bind of its system_id and goes to that
// session (as an SMSC keeps the receipts of an ESME that is not bound); a NAKed one is sent
// again.
// A PDU it cannot read (a command_length that does not frame the stream) closes the session,
// as an SMSC that lost the PDUs' boundaries must: node-smpp itself would read nothing more
// on it and leave it open (Session._extractPDUs keeps its `_busy` flag after the error).
const smpp = require('smpp');
const http = require('http');
const PORT = +process.env.SMSC_PORT, CONTROL = +process.env.CONTROL_PORT;
const USER = process.env.SMSC_USER || '', PASS = process.env.SMSC_PASS || '';
const DLR_DELAY = +(process.env.DLR_DELAY_MS || 50);
// Each PDU's short_message as it came, kept before node-smpp decodes it (for `hex`).
const decodeFields = smpp.PDU.prototype._filter;
smpp.PDU.prototype._filter = function (func) {
  if (func === 'decode' && Buffer.isBuffer(this.short_message)) this.raw = Buffer.from(this.short_message);
  return decodeFields.call(this, func);
};
let nextId = 1, throttle = 0, throttleStatus = smpp.ESME_RTHROTTLED, nack = 0, nackStatus = smpp.ESME_RINVCMDLEN, hold = false;
let autoReceipts = true;
const givenIds = [];
const submits = [], held = [], waiting = [], binds = {ok: 0, refused: 0, unbinds: 0, broken: 0, enquires: 0, enquire_answers: 0}, bound = new Set(), sessions = new Set();
const unbound = [], systemTypes = [], delivers = {transceiver: 0, transmitter: 0, receiver: 0}, moAnswers = {ok: 0, refused: 0};
const KINDS = {bind_transceiver: 'transceiver', bind_transmitter: 'transmitter', bind_receiver: 'receiver'};
const receives = s => bound.has(s) && s.kind !== 'transmitter';
// the session a receipt for `session`'s submit_sm goes to now (undefined: none; it waits)
const receiverFor = session => receives(session) ? session :
  [...bound].find(s => receives(s) && s.systemId === session.systemId);
// An MO's fields: text=, or hex= (short_message as raw bytes, e.g. behind a UDH with esm=64),
// dc= (data_coding), sar=REF,TOTAL,SEQ (the sar_* TLVs), payload= (hex: message_payload TLV
// with an empty short_message).
function moFields(q) {
  const fields = {source_addr: q.get('from') || '4915100001', source_addr_ton: 1, source_addr_npi: 1,
    destination_addr: q.get('to') || 'TEST',
    short_message: q.has('hex') ? Buffer.from(q.get('hex'), 'hex') : (q.get('text') || '')};
  if (q.has('esm')) fields.esm_class = +q.get('esm');
  if (q.has('dc')) fields.data_coding = +q.get('dc');
  if (q.has('sar')) {
    const [ref, total, seq] = q.get('sar').split(',').map(Number);
    Object.assign(fields, {sar_msg_ref_num: ref, sar_total_segments: total, sar_segment_seqnum: seq});
  }
  if (q.has('payload')) Object.assign(fields, {short_message: Buffer.alloc(0), message_payload: Buffer.from(q.get('payload'), 'hex')});
  return fields;
}

function deliver(session, fields, done) {
  delivers[session.kind]++;
  session.deliver_sm(fields, done);
}
const pad = n => String(n).padStart(2, '0');
const ts = d => `${pad(d.getFullYear() % 100)}${pad(d.getMonth() + 1)}${pad(d.getDate())}${pad(d.getHours())}${pad(d.getMinutes())}`;

function receipt(from, pdu, id) {
  const session = receiverFor(from);
  if (!session) return waiting.push([pdu, id, from.systemId]);
  const fail = pdu.destination_addr.endsWith('0000');
  const now = ts(new Date());
  const stat = fail ? 'UNDELIV' : 'DELIVRD', err = fail ? '001' : '000';
  const text = `id:${id} sub:001 dlvrd:${fail ? '000' : '001'} submit date:${now} done date:${now} stat:${stat} err:${err} text:`;
  const pending = [pdu, id, session.systemId];
  session.unanswered.add(pending);
  deliver(session, {
    source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
    esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
    short_message: Buffer.from(text, 'ascii'), data_coding: 0,
    receipted_message_id: id,
    message_state: fail ? smpp.MESSAGE_STATE.UNDELIVERABLE : smpp.MESSAGE_STATE.DELIVERED,
  }, resp => {
    session.unanswered.delete(pending);
    if (resp.command_status !== 0) setTimeout(() => receipt(session, pdu, id), DLR_DELAY);
  });
}

function answer(session, pdu, seen) {
  const counted = (nextId++).toString(16).toUpperCase().padStart(8, '0');
  const id = givenIds.length ? givenIds.shift() : counted;
  seen.answered = id;
  session.send(pdu.response({message_id: id}));
  if ((pdu.registered_delivery & 1) && autoReceipts) setTimeout(() => receipt(session, pdu, id), DLR_DELAY);
}

const server = smpp.createServer(session => {
  sessions.add(session);
  session.unanswered = new Set();  // receipts sent, their deliver_sm_resp not yet come
  session.on('close', () => {
    bound.delete(session); sessions.delete(session);
    for (const pending of session.unanswered) waiting.push(pending);  // kept, as an SMSC does
  });
  session.on('error', e => {
    if (e && e.code) return;  // the socket's own (ECONNRESET...): it closes by itself
    binds.broken++;
    session.socket.destroy();
  });
  const onBind = pdu => {
    if (USER && (pdu.system_id !== USER || pdu.password !== PASS)) {
      binds.refused++;
      session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
      return session.close();
    }
    binds.ok++;
    systemTypes.push(pdu.system_type);
    session.kind = KINDS[pdu.command];
    session.systemId = pdu.system_id;
    session.send(pdu.response({system_id: 'SIMSMSC'}));
    bound.add(session);
    if (!receives(session)) return;
    const mine = waiting.filter(w => w[2] === session.systemId);
    const others = waiting.filter(w => w[2] !== session.systemId);
    waiting.length = 0;
    for (const w of others) waiting.push(w);
    for (const [waited, id] of mine) receipt(session, waited, id);
  };
  Object.keys(KINDS).forEach(c => session.on(c, onBind));
  session.on('enquire_link', pdu => { binds.enquires++; session.send(pdu.response()); });
  session.on('unbind', pdu => {
    binds.unbinds++; unbound.push(session.kind);
    session.send(pdu.response()); session.close();
  });
  session.on('submit_sm', pdu => {
    const sm = pdu.short_message || {};
    const udh = sm.udh ? sm.udh.map(b => Buffer.from(b).toString('hex')) : [];
    const seen = {destination: pdu.destination_addr, source: pdu.source_addr,
      source_ton: pdu.source_addr_ton, source_npi: pdu.source_addr_npi,
      data_coding: pdu.data_coding, esm_class: pdu.esm_class, udh,
      text: typeof sm.message === 'string' ? sm.message
        : Buffer.isBuffer(sm.message) ? sm.message.toString('hex') : (Buffer.isBuffer(sm) ? sm.toString('hex') : ''),
      hex: pdu.raw ? pdu.raw.toString('hex') : '',
      registered_delivery: pdu.registered_delivery, validity: pdu.validity_period || null, answered: null,
      at: Date.now()};
    submits.push(seen);
    if (throttle > 0) {
      throttle--;
      seen.answered = 'throttled';
      return session.send(pdu.response({command_status: throttleStatus}));
    }
    if (nack > 0) {  // as a carrier that could not read the PDU: no submit_sm_resp
      nack--;
      seen.answered = 'nack';
      return session.send(new smpp.PDU('generic_nack',
        {sequence_number: pdu.sequence_number, command_status: nackStatus}));
    }
    if (hold) { seen.answered = 'held'; held.push([session, pdu, seen]); return; }
    answer(session, pdu, seen);
  });
});
server.listen(PORT, '127.0.0.1');

const json = (res, body) => { res.writeHead(200, {'Content-Type': 'application/json'}); res.end(JSON.stringify(body)); };
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x'), q = u.searchParams;
  if (u.pathname === '/mo') {
    let n = 0;
    for (const s of [...bound].filter(receives)) {
      n++;
      for (let i = +(q.get('count') || 1); i > 0; i--) {
        deliver(s, moFields(q), resp => moAnswers[resp.command_status === 0 ? 'ok' : 'refused']++);
      }
    }
    return json(res, {sessions: n});
  }
  if (u.pathname === '/submits') return json(res, submits);
  if (u.pathname === '/count') return json(res, {submits: submits.length});
  if (u.pathname === '/release') {
    hold = false;
    let n = 0;
    for (const [session, pdu, seen] of held.splice(0)) {
      if (sessions.has(session)) { n++; answer(session, pdu, seen); }
    }
    return json(res, {released: n});
  }
  if (u.pathname === '/binds') {
    const kinds = [...bound].map(s => s.kind).sort();
    return json(res, {...binds, bound: bound.size, kinds, unbound, delivers, mo_answers: moAnswers,
      system_types: systemTypes});
  }
  if (u.pathname === '/throttle') {
    throttle = +(q.get('n') || 1);
    throttleStatus = q.has('status') ? +q.get('status') : smpp.ESME_RTHROTTLED;
    return json(res, {throttle});
  }
  if (u.pathname === '/enquire') {
    const to = [...bound];
    for (const s of to) s.enquire_link({}, resp => { if (resp.command_status === 0) binds.enquire_answers++; });
    return json(res, {sessions: to.length});
  }
  if (u.pathname === '/nack') {
    nack = +(q.get('n') || 1);
    nackStatus = q.has('status') ? +q.get('status') : smpp.ESME_RINVCMDLEN;
    return json(res, {nack});
  }
  if (u.pathname === '/ids') { givenIds.push(...q.get('list').split(',')); return json(res, {ids: givenIds}); }
  if (u.pathname === '/receipts') { autoReceipts = q.get('on') === '1'; return json(res, {on: autoReceipts}); }
  if (u.pathname === '/receipt') {
    const id = q.get('id'), stat = q.has('stat') ? ` stat:${q.get('stat')}` : '';
    const err = q.has('err') ? ` err:${q.get('err')}` : '';
    const fields = {source_addr: '4915100001', destination_addr: 'SMSGW',
      esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT, data_coding: 0,
      short_message: Buffer.from(`id:${id} sub:001 dlvrd:001${stat}${err} text:`, 'ascii')};
    if (q.get('tlv') !== '0') fields.receipted_message_id = id;
    if (q.has('state')) fields.message_state = +q.get('state');
    const to = [...bound].filter(receives);
    for (const s of to) deliver(s, fields, () => {});
    return json(res, {sessions: to.length});
  }
  if (u.pathname === '/hold') { hold = q.get('on') === '1'; return json(res, {hold}); }
  if (u.pathname === '/drop') {
    const kind = q.get('kind');
    const dropped = [...sessions].filter(s => !kind || s.kind === kind);
    for (const s of dropped) s.socket.destroy();
    return json(res, {dropped: dropped.length});
  }
  res.writeHead(404); res.end();
}).listen(CONTROL, '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
