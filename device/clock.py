# Wall-clock helpers: UTC seconds since 1970 -> "YYYY-MM-DDTHH:MM:SSZ".
# Written out because MicroPython ports differ in their epoch and in
# time.gmtime(); the firmware passes in seconds since 1970 from its RTC.


def _civil(days):
    # days since 1970-01-01 -> (year, month, day), proleptic Gregorian
    days += 719468  # shift the epoch to 0000-03-01
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # 0 = March
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def _two(n):
    return ("0" + str(n)) if n < 10 else str(n)


def utc_iso(seconds):
    seconds = int(seconds)
    days = seconds // 86400
    rest = seconds - days * 86400
    year, month, day = _civil(days)
    return (
        str(year)
        + "-"
        + _two(month)
        + "-"
        + _two(day)
        + "T"
        + _two(rest // 3600)
        + ":"
        + _two(rest // 60 % 60)
        + ":"
        + _two(rest % 60)
        + "Z"
    )
