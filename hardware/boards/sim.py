# The simulated keypad of simulators/ (tests and the demo): same layout as
# the ESP32-S3 board so one scenario runs on both.
KEY_PINS = (4, 5, 6, 7, 15)
KEYS_ACTIVE_LOW = True
LED_PIN = 48
BUZZER_PIN = 21
# No DISPLAY here: simulators.keypad.SimKeypad hands build() a SimDisplay of
# this size when it is asked for one (display=True or frames_dir).
DISPLAY_WIDTH = 128
DISPLAY_HEIGHT = 64
I2C_SDA = 8
I2C_SCL = 9
