-- wrk's summary as one JSON line, so the bench reads exact counts rather than wrk's rounded
-- report ("1.27GB read"). bytes counts everything read, response headers and the bodies of
-- responses still in flight when the window closed included; the bench subtracts the headers.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"bytes":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d}\n',
    summary.requests, summary.bytes, summary.duration, errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
